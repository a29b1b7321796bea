-- name: upsert_callback
-- Creates or updates; xmax = 0 tells an insert from an update. Enabling again clears the
-- failure window so an old run of failures does not disable it at once. Disabling an existing
-- callback is left to disable_callbacks_v1, which the caller runs next.
-- $9 and $10 are the delivery options and sealed credentials after the update (the caller
-- merged them with what was there). $11 and $12 are the limits, applied only where $13 and $14
-- say the request named them (null then resets one). Enabling it again or changing its URL
-- closes its circuit.
INSERT INTO callbacks (partner_id, notification_type, url, enabled, description,
                       ordered_delivery, signing_secret, disabled_reason, delivery_options,
                       sealed_credentials, max_in_flight, max_per_second)
VALUES ($1, $2, $3, $4, $5, coalesce($6::boolean, $7::boolean), $8,
        CASE WHEN $4 THEN NULL ELSE 'disabled_by_user' END, $9, $10, $11, $12)
ON CONFLICT (partner_id, notification_type) DO UPDATE SET
    max_in_flight = CASE WHEN $13 THEN excluded.max_in_flight ELSE callbacks.max_in_flight END,
    max_per_second = CASE WHEN $14 THEN excluded.max_per_second
                          ELSE callbacks.max_per_second END,
    url = excluded.url,
    delivery_options = excluded.delivery_options,
    sealed_credentials = excluded.sealed_credentials,
    enabled = callbacks.enabled OR excluded.enabled,
    description = excluded.description,
    ordered_delivery = coalesce($6::boolean, callbacks.ordered_delivery),
    failing_since = CASE WHEN excluded.enabled THEN NULL ELSE callbacks.failing_since END,
    disabled_reason = CASE WHEN excluded.enabled THEN NULL ELSE callbacks.disabled_reason END,
    -- enabled again, or sent elsewhere: the circuit starts closed (a Retry-After still holds)
    consecutive_failures = CASE WHEN (excluded.enabled AND NOT callbacks.enabled)
                                     OR excluded.url <> callbacks.url
                                THEN 0 ELSE callbacks.consecutive_failures END,
    circuit_opened_at = CASE WHEN (excluded.enabled AND NOT callbacks.enabled)
                                  OR excluded.url <> callbacks.url
                             THEN NULL ELSE callbacks.circuit_opened_at END,
    next_probe_at = CASE WHEN (excluded.enabled AND NOT callbacks.enabled)
                              OR excluded.url <> callbacks.url
                         THEN NULL ELSE callbacks.next_probe_at END,
    updated_at = now()
RETURNING id, partner_id, notification_type, url, enabled, description, ordered_delivery,
          disabled_reason, delivery_options, signing_secret, max_in_flight, max_per_second,
          consecutive_failures, circuit_opened_at, next_probe_at, paused_until, failing_since,
          created_at, updated_at, (xmax = 0) AS created;

-- name: lock_callback
-- The row as it was before a change (for the audit trail), locked until the change commits.
SELECT id, partner_id, notification_type, url, enabled, description, ordered_delivery,
       delivery_options, sealed_credentials, signing_secret, max_in_flight, max_per_second
FROM callbacks WHERE partner_id = $1 AND notification_type = $2
FOR UPDATE;

-- name: get_callback
SELECT id, partner_id, notification_type, url, enabled, description, ordered_delivery,
       disabled_reason, delivery_options, signing_secret, max_in_flight, max_per_second,
       consecutive_failures, circuit_opened_at, next_probe_at, paused_until, failing_since,
       created_at, updated_at
FROM callbacks WHERE partner_id = $1 AND notification_type = $2;

-- name: list_callbacks
SELECT id, partner_id, notification_type, url, enabled, description, ordered_delivery,
       disabled_reason, delivery_options, signing_secret, max_in_flight, max_per_second,
       consecutive_failures, circuit_opened_at, next_probe_at, paused_until, failing_since,
       created_at, updated_at, count(*) OVER () AS total
FROM callbacks WHERE partner_id = $1
ORDER BY notification_type OFFSET $2 LIMIT $3;

-- name: count_callbacks
SELECT count(*) FROM callbacks WHERE partner_id = $1;

-- name: cancel_callback_deliveries
UPDATE deliveries
SET status = 'cancelled', failure_reason = 'callback_deleted', next_attempt_at = NULL,
    locked_by = NULL, finished_at = now()
WHERE callback_id = $1 AND status IN ('queued', 'delivering');

-- name: delete_callback
DELETE FROM callbacks WHERE id = $1;

-- name: rotate_secret
UPDATE callbacks
SET previous_secret = signing_secret,
    previous_secret_expires_at = now() + make_interval(secs => $3),
    signing_secret = $4,
    delivery_options = delivery_options || $5::jsonb,
    updated_at = now()
WHERE partner_id = $1 AND notification_type = $2
RETURNING previous_secret_expires_at;
