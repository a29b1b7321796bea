-- name: callback_for_echo
SELECT id, enabled, ordered_delivery FROM callbacks
WHERE partner_id = $1 AND notification_type = $2;

-- name: claim_idempotency_key
-- Takes the key, or takes it over when the holder is older than the time to live.
INSERT INTO idempotency_keys (partner_id, key, request_hash, notification_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (partner_id, key) DO UPDATE SET
    request_hash = excluded.request_hash,
    notification_id = excluded.notification_id,
    created_at = now()
WHERE idempotency_keys.created_at < now() - make_interval(secs => $5)
RETURNING notification_id;

-- name: get_idempotency_key
SELECT request_hash, notification_id FROM idempotency_keys WHERE partner_id = $1 AND key = $2;

-- name: notify_due
SELECT pg_notify('callbackhub_due', '');

-- name: callbacks_for_batch
SELECT DISTINCT c.id, c.partner_id, c.notification_type, c.enabled, c.ordered_delivery
FROM callbacks c
JOIN unnest($1::uuid[], $2::integer[]) AS wanted (partner_id, notification_type)
  ON c.partner_id = wanted.partner_id AND c.notification_type = wanted.notification_type;

-- name: existing_partners
SELECT id FROM partners WHERE id = ANY ($1::uuid[]);

-- name: next_subject_sequences
-- Reserves $3 sequence numbers per (callback, subject), locking the rows in a fixed order so
-- that concurrent batches cannot deadlock. Each row's lock serialises racing echoes of one
-- subject until the first commits.
INSERT INTO subject_sequences (callback_id, subject, last_value)
SELECT callback_id, subject, reserved
FROM unnest($1::bigint[], $2::uuid[], $3::bigint[]) AS r (callback_id, subject, reserved)
ORDER BY callback_id, subject
ON CONFLICT (callback_id, subject) DO UPDATE
    SET last_value = subject_sequences.last_value + excluded.last_value
RETURNING callback_id, subject, last_value;

-- name: subjects_with_pending
-- A separate statement from next_subject_sequences on purpose: it takes a new snapshot after
-- the subjects' locks are held, so it sees an earlier notification that committed meanwhile.
SELECT DISTINCT d.callback_id, d.subject
FROM deliveries d
JOIN unnest($1::bigint[], $2::uuid[]) AS s (callback_id, subject)
  ON d.callback_id = s.callback_id AND d.subject = s.subject
WHERE d.ordered AND d.status IN ('queued', 'delivering');

-- name: insert_batch
-- The notifications and their deliveries in one statement (one round trip; the foreign key is
-- checked at its end), and a wake-up for the dispatchers when any of them is ready ($10).
WITH notifications_in AS (
    INSERT INTO notifications (id, partner_id, notification_type, subject, payload)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::integer[], $4::uuid[], $5::bytea[])
), deliveries_in AS (
    INSERT INTO deliveries (notification_id, callback_id, partner_id, notification_type,
                            subject, sequence, ordered, next_attempt_at)
    SELECT id, callback_id, partner_id, notification_type, subject, sequence, ordered,
           CASE WHEN ready THEN now() END
    FROM unnest($1::uuid[], $6::bigint[], $2::uuid[], $3::integer[], $4::uuid[],
                $7::bigint[], $8::boolean[], $9::boolean[])
         AS n (id, callback_id, partner_id, notification_type, subject, sequence, ordered, ready)
)
SELECT pg_notify('callbackhub_due', '') WHERE $10::boolean;
