-- name: queue_depth
SELECT count(*) FILTER (WHERE next_attempt_at <= now() AND status = 'queued') AS due,
       count(*) FILTER (WHERE next_attempt_at > now() AND status = 'queued') AS scheduled,
       count(*) FILTER (WHERE next_attempt_at IS NULL AND status = 'queued') AS waiting
FROM deliveries WHERE status IN ('queued', 'delivering');
