-- name: callback_overview
-- One row per callback of the partner: its state, its last attempt, and the last 24 hours.
SELECT c.notification_type, c.url, c.enabled, c.disabled_reason, c.ordered_delivery,
       c.failing_since, c.circuit_opened_at IS NOT NULL AS circuit_open,
       last.last_attempt_at, last.status AS last_status,
       coalesce(day.deliveries, 0) AS deliveries_24h, coalesce(day.failures, 0) AS failures_24h
FROM callbacks c
LEFT JOIN LATERAL (
    SELECT d.last_attempt_at, d.status FROM deliveries d
    WHERE d.partner_id = c.partner_id AND d.notification_type = c.notification_type
      AND d.last_attempt_at IS NOT NULL
    ORDER BY d.last_attempt_at DESC LIMIT 1
) AS last ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS deliveries, count(*) FILTER (WHERE d.status = 'failed') AS failures
    FROM deliveries d
    WHERE d.partner_id = c.partner_id AND d.notification_type = c.notification_type
      AND d.created_at > now() - interval '24 hours'
) AS day ON true
WHERE c.partner_id = $1
ORDER BY c.notification_type;

-- name: hourly_outcomes
-- Delivered and failed notifications of the partner per hour, over the last 24 hours.
SELECT date_trunc('hour', d.finished_at) AS hour,
       count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE d.status = 'failed') AS failed
FROM deliveries d
WHERE d.partner_id = $1 AND d.status IN ('delivered', 'failed')
  AND d.finished_at > date_trunc('hour', now()) - interval '23 hours'
GROUP BY 1;

-- name: partner_health
-- Every partner with its callbacks' health at a glance (the operator view).
SELECT p.id, p.name,
       count(c.id) AS callbacks,
       count(c.id) FILTER (WHERE NOT c.enabled) AS disabled,
       count(c.id) FILTER (WHERE c.enabled AND c.failing_since IS NOT NULL) AS failing,
       (SELECT count(*) FROM deliveries d
        WHERE d.partner_id = p.id AND d.status = 'failed'
          AND d.finished_at > now() - interval '24 hours') AS failed_24h,
       count(*) OVER () AS total
FROM partners p LEFT JOIN callbacks c ON c.partner_id = p.id
GROUP BY p.id
ORDER BY p.name, p.id
OFFSET $1 LIMIT $2;
