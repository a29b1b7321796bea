-- name: disable_callbacks
-- The callbacks stop receiving and their pending deliveries fail, with the events of it: see
-- disable_callbacks_v2 (0012) and v1 (0006).
SELECT change, callback_id, notification_id, reason
FROM disable_callbacks_v2($1::bigint[], $2::text);

-- name: disabled_callbacks
SELECT count(*) FROM callbacks WHERE NOT enabled;

-- name: open_circuits
SELECT count(*) FROM callbacks WHERE circuit_opened_at IS NOT NULL;
