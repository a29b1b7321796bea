-- name: purge_finished
-- Deletes one small batch of finished notifications older than $1 days (deliveries and
-- attempts go with them by cascade). SKIP LOCKED keeps it out of the hot paths' way.
WITH doomed AS (
    SELECT notification_id FROM deliveries
    WHERE finished_at < now() - make_interval(days => $1)
      AND status IN ('delivered', 'failed', 'cancelled')
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM notifications n USING doomed WHERE n.id = doomed.notification_id;

-- name: purge_idempotency_keys
DELETE FROM idempotency_keys
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys
    WHERE created_at < now() - make_interval(secs => $1)
    LIMIT $2));

-- name: purge_operator_events
-- Finished events older than the retention ($1 days), at most $2 at a time.
DELETE FROM operator_events
WHERE id IN (SELECT id FROM operator_events
             WHERE status IN ('delivered', 'failed')
               AND created_at < now() - make_interval(secs => $1 * 86400)
             LIMIT $2);
