-- name: callback_for_echo
SELECT id, enabled, ordered_delivery FROM callbacks
WHERE partner_id = $1 AND notification_type = $2;

-- name: notify_due
SELECT pg_notify('callbackhub_due', '');

-- name: ingest_batch
-- A batch of echoes, stored and committed in one round trip: see sql/migrations/0003.
SELECT item, outcome, stored_id
FROM ingest_batch($1::uuid[], $2::uuid[], $3::integer[], $4::uuid[], $5::bytea[], $6::text[],
                  $7::bytea[], $8::float8);
