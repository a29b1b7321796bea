-- name: store_notifications
-- A batch of echoes, stored and committed in one round trip: see store_notifications_v1
-- (sql/migrations/0003_ingest_batch.sql).
SELECT item, outcome, stored_id
FROM store_notifications_v1($1::uuid[], $2::uuid[], $3::integer[], $4::uuid[], $5::bytea[],
                            $6::text[], $7::bytea[], $8::float8);

-- name: store_traced_notifications
-- The same, with each item's trace context (tracing on): see store_notifications_v2
-- (sql/migrations/0009_notification_traces.sql).
SELECT item, outcome, stored_id
FROM store_notifications_v2($1::uuid[], $2::uuid[], $3::integer[], $4::uuid[], $5::bytea[],
                            $6::text[], $7::bytea[], $8::float8, $9::text[], $10::text[]);
