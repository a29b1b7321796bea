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

-- name: next_subject_sequence
-- Its row lock serialises racing echoes of one subject until the first commits.
INSERT INTO subject_sequences (callback_id, subject, last_value) VALUES ($1, $2, 1)
ON CONFLICT (callback_id, subject) DO UPDATE SET last_value = subject_sequences.last_value + 1
RETURNING last_value;

-- name: insert_notification
-- A separate statement from next_subject_sequence on purpose: it takes a new snapshot after the
-- subject's lock is held, so it sees an earlier notification that committed while we waited.
WITH notification AS (
    INSERT INTO notifications (id, partner_id, notification_type, subject, payload)
    VALUES ($1, $2, $3, $4, $5)
), waits AS (
    SELECT $8::boolean AND EXISTS (
        SELECT 1 FROM deliveries
        WHERE callback_id = $6 AND subject = $4 AND ordered
          AND status IN ('queued', 'delivering')
    ) AS behind_earlier
)
INSERT INTO deliveries (notification_id, callback_id, partner_id, notification_type, subject,
                        sequence, ordered, next_attempt_at)
SELECT $1, $6, $2, $3, $4, $7, $8,
       CASE WHEN waits.behind_earlier THEN NULL ELSE now() END
FROM waits
RETURNING next_attempt_at IS NOT NULL AS ready;

-- name: notify_due
SELECT pg_notify('callbackhub_due', '');
