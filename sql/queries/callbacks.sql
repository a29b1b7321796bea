-- name: upsert_callback
-- Creates or updates; xmax = 0 tells an insert from an update. Enabling again clears the
-- failure window so an old run of failures does not disable it at once.
INSERT INTO callbacks (partner_id, notification_type, url, enabled, description,
                       ordered_delivery, signing_secret)
VALUES ($1, $2, $3, $4, $5, coalesce($6::boolean, $7::boolean), $8)
ON CONFLICT (partner_id, notification_type) DO UPDATE SET
    url = excluded.url,
    enabled = excluded.enabled,
    description = excluded.description,
    ordered_delivery = coalesce($6::boolean, callbacks.ordered_delivery),
    failing_since = CASE WHEN excluded.enabled THEN NULL ELSE callbacks.failing_since END,
    disabled_reason = CASE WHEN excluded.enabled THEN NULL ELSE 'disabled_by_user' END,
    updated_at = now()
RETURNING id, partner_id, notification_type, url, enabled, description, ordered_delivery,
          disabled_reason, signing_secret, created_at, updated_at, (xmax = 0) AS created;

-- name: get_callback
SELECT id, partner_id, notification_type, url, enabled, description, ordered_delivery,
       disabled_reason, signing_secret, created_at, updated_at
FROM callbacks WHERE partner_id = $1 AND notification_type = $2;

-- name: list_callbacks
SELECT id, partner_id, notification_type, url, enabled, description, ordered_delivery,
       disabled_reason, signing_secret, created_at, updated_at, count(*) OVER () AS total
FROM callbacks WHERE partner_id = $1
ORDER BY notification_type OFFSET $2 LIMIT $3;

-- name: count_callbacks
SELECT count(*) FROM callbacks WHERE partner_id = $1;

-- name: lock_partner_subjects
-- Deleting a callback ($2) or all of a partner's ($2 NULL) deletes their subject_sequences rows
-- by cascade. Locking those rows first, in the order echo and the dispatcher lock them (see
-- lock_subjects), keeps the delete from deadlocking with a dispatcher that holds a subject
-- and waits for one of the delivery rows the delete is cancelling.
SELECT 1 FROM subject_sequences s
JOIN callbacks c ON c.id = s.callback_id
WHERE c.partner_id = $1 AND ($2::bigint IS NULL OR c.id = $2)
ORDER BY s.callback_id, s.subject
FOR UPDATE OF s;

-- name: cancel_callback_deliveries
UPDATE deliveries
SET status = 'cancelled', failure_reason = 'callback_deleted', next_attempt_at = NULL,
    locked_by = NULL, finished_at = now()
WHERE callback_id = $1 AND status IN ('queued', 'delivering');

-- name: fail_callback_deliveries
-- A disabled callback's pending deliveries fail; redeliver-failed brings them back.
UPDATE deliveries
SET status = 'failed', failure_reason = $2, next_attempt_at = NULL,
    locked_by = NULL, finished_at = now()
WHERE callback_id = $1 AND status IN ('queued', 'delivering');

-- name: delete_callback
DELETE FROM callbacks WHERE id = $1;

-- name: rotate_secret
UPDATE callbacks
SET previous_secret = signing_secret,
    previous_secret_expires_at = now() + make_interval(secs => $3),
    signing_secret = $4,
    updated_at = now()
WHERE partner_id = $1 AND notification_type = $2
RETURNING signing_secret;
