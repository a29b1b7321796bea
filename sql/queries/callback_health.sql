-- name: disable_callbacks
-- The callbacks stop receiving and their pending deliveries fail: see disable_callbacks_v1.
SELECT change, callback_id, notification_id, reason
FROM disable_callbacks_v1($1::bigint[], $2::text);

-- name: disabled_callbacks
SELECT count(*) FROM callbacks WHERE NOT enabled;
