-- name: list_notifications
SELECT d.notification_id, d.notification_type, d.status, d.attempts, d.created_at,
       d.last_attempt_at, d.next_attempt_at, d.delivered_at, d.failure_reason,
       d.callback_id, d.subject, d.sequence, d.ordered,
       count(*) OVER () AS total
FROM deliveries d
WHERE d.partner_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::integer IS NULL OR d.notification_type = $3)
  AND ($4::timestamptz IS NULL OR d.created_at >= $4)
  AND ($5::timestamptz IS NULL OR d.created_at < $5)
  AND ($6::uuid IS NULL OR d.subject = $6)
ORDER BY d.created_at DESC, d.notification_id DESC
OFFSET $7 LIMIT $8;

-- name: count_notifications
SELECT count(*) FROM deliveries d
WHERE d.partner_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::integer IS NULL OR d.notification_type = $3)
  AND ($4::timestamptz IS NULL OR d.created_at >= $4)
  AND ($5::timestamptz IS NULL OR d.created_at < $5)
  AND ($6::uuid IS NULL OR d.subject = $6);

-- name: blocked_by
-- For waiting ordered deliveries: the earliest unfinished notification of the same subject.
SELECT w.notification_id, (
    SELECT e.notification_id FROM deliveries e
    WHERE e.callback_id = w.callback_id AND e.subject = w.subject AND e.ordered
      AND e.sequence < w.sequence AND e.status IN ('queued', 'delivering')
    ORDER BY e.sequence LIMIT 1) AS blocked_by
FROM unnest($1::uuid[]) AS w_id(id)
JOIN deliveries w ON w.notification_id = w_id.id;

-- name: get_notification
SELECT d.notification_id, d.notification_type, d.status, d.attempts, d.created_at,
       d.last_attempt_at, d.next_attempt_at, d.delivered_at, d.failure_reason,
       d.callback_id, d.subject, d.sequence, d.ordered, n.payload, t.traceparent
FROM deliveries d JOIN notifications n ON n.id = d.notification_id
LEFT JOIN notification_traces t ON t.notification_id = d.notification_id
WHERE d.partner_id = $1 AND d.notification_id = $2;

-- name: list_attempts
SELECT attempt, started_at, duration_ms, response_status, response_body, error, signature
FROM delivery_attempts WHERE notification_id = $1 ORDER BY attempt;

-- name: redeliver
-- A fresh round of attempts, sent on its own: it neither waits for nor holds up its subject.
UPDATE deliveries d
SET status = 'queued', round_attempts = 0, next_attempt_at = now(), ordered = false,
    failure_reason = NULL, finished_at = NULL, locked_by = NULL,
    callback_id = c.id
FROM callbacks c
WHERE d.partner_id = $1 AND d.notification_id = $2
  AND c.partner_id = d.partner_id AND c.notification_type = d.notification_type
  AND d.status <> 'delivering'
RETURNING d.notification_id;

-- name: redeliver_failed
UPDATE deliveries d
SET status = 'queued', round_attempts = 0, next_attempt_at = now(), ordered = false,
    failure_reason = NULL, finished_at = NULL, locked_by = NULL,
    callback_id = c.id
FROM callbacks c
WHERE d.partner_id = $1 AND d.status = 'failed' AND d.created_at >= $2
  AND c.partner_id = d.partner_id AND c.notification_type = d.notification_type
  AND c.enabled;

-- name: callback_state
SELECT id, enabled, ordered_delivery FROM callbacks
WHERE partner_id = $1 AND notification_type = $2;

-- name: notify_due
SELECT pg_notify('callbackhub_due', '');
