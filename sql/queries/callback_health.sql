-- name: disable_callbacks
-- The callbacks stop receiving and their pending deliveries fail, with the events of it: see
-- disable_callbacks_v2 (0012) and v1 (0006).
SELECT change, callback_id, notification_id, reason
FROM disable_callbacks_v2($1::bigint[], $2::text);

-- name: disabled_callbacks
SELECT count(*) FROM callbacks WHERE NOT enabled;

-- name: open_circuits
SELECT count(*) FROM callbacks WHERE circuit_opened_at IS NOT NULL;

-- name: fail_stragglers
-- Notifications an echo stored for a callback while it was being disabled: the echo read the
-- callback as enabled, the disable had already failed what was pending, and the echo committed
-- after it (echo takes no lock on the callback, so the two do not wait for each other). They
-- fail like the rest of that callback's (disable_callbacks_v2 with the callback's own reason,
-- which changes nothing else for a callback already disabled), with their events.
SELECT d.change, d.callback_id, d.notification_id, d.reason
FROM (
    SELECT c.disabled_reason, array_agg(c.id ORDER BY c.id) AS ids
    FROM callbacks c
    WHERE NOT c.enabled
      AND EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.callback_id = c.id AND d.status IN ('queued', 'delivering'))
    GROUP BY c.disabled_reason
) AS stragglers
CROSS JOIN LATERAL disable_callbacks_v2(stragglers.ids, stragglers.disabled_reason) AS d;
