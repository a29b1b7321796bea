-- name: get_operator_webhook
SELECT url, enabled, event_types, created_at, updated_at FROM operator_webhooks;

-- name: lock_operator_webhook
SELECT url, enabled, event_types, created_at, updated_at FROM operator_webhooks FOR UPDATE;

-- name: upsert_operator_webhook
-- $4, the sealed secret, is stored only by an insert: an update keeps the webhook's secret.
INSERT INTO operator_webhooks (url, enabled, event_types, signing_secret)
VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET
    url = excluded.url, enabled = excluded.enabled, event_types = excluded.event_types,
    updated_at = now()
RETURNING url, enabled, event_types, created_at, updated_at, (xmax = 0) AS created;

-- name: delete_operator_webhook
-- What was still to be sent fails: there is nowhere to send it.
WITH pending AS (
    UPDATE operator_events
    SET status = 'failed', failure_reason = 'webhook_deleted', next_attempt_at = NULL,
        locked_by = NULL, finished_at = now()
    WHERE status IN ('queued', 'delivering')
)
DELETE FROM operator_webhooks RETURNING url;

-- name: rotate_operator_secret
UPDATE operator_webhooks
SET previous_secret = signing_secret,
    previous_secret_expires_at = now() + make_interval(secs => $1),
    signing_secret = $2,
    updated_at = now()
RETURNING previous_secret_expires_at;
