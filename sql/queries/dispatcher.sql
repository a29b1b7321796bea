-- name: claim_due
-- Claim up to $1 due deliveries for this worker ($8), at most $6 per callback, fewer for the
-- callbacks this worker is already busy with ($4 ids, $5 free slots), none for those it has
-- saturated ($3). Expired leases ('delivering' past next_attempt_at) are claimed again.
WITH candidates AS (
    SELECT notification_id, callback_id, next_attempt_at
    FROM deliveries
    WHERE status IN ('queued', 'delivering') AND next_attempt_at <= now()
      AND callback_id <> ALL ($3::bigint[])
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT notification_id, callback_id, next_attempt_at,
           row_number() OVER (PARTITION BY callback_id ORDER BY next_attempt_at) AS rank
    FROM candidates
), chosen AS (
    SELECT ranked.notification_id
    FROM ranked
    LEFT JOIN unnest($4::bigint[], $5::integer[]) AS busy (callback_id, free)
           ON busy.callback_id = ranked.callback_id
    WHERE ranked.rank <= coalesce(busy.free, $6)
    ORDER BY ranked.next_attempt_at
    LIMIT $1
)
UPDATE deliveries d
SET status = 'delivering',
    next_attempt_at = now() + make_interval(secs => $7),
    locked_by = $8,
    attempts = d.attempts + 1,
    round_attempts = d.round_attempts + 1,
    last_attempt_at = now()
FROM chosen, notifications n, callbacks c
WHERE d.notification_id = chosen.notification_id
  AND n.id = d.notification_id
  AND c.id = d.callback_id
RETURNING d.notification_id, d.callback_id, d.notification_type, d.attempts, d.round_attempts,
          d.sequence, d.ordered, d.subject, d.partner_id, n.created_at AS accepted_at,
          n.payload, c.url, c.signing_secret,
          CASE WHEN c.previous_secret_expires_at > now() THEN c.previous_secret END
              AS previous_secret;

-- name: lock_subjects
-- Taken before finishing ordered deliveries, in a fixed order; see insert_notification.
SELECT 1 FROM subject_sequences s
JOIN unnest($1::bigint[], $2::uuid[]) AS f (callback_id, subject)
  ON s.callback_id = f.callback_id AND s.subject = f.subject
ORDER BY s.callback_id, s.subject
FOR UPDATE OF s;

-- name: record_attempts
INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms,
                               response_status, response_body, error)
SELECT * FROM unnest($1::uuid[], $2::integer[], $3::timestamptz[], $4::integer[],
                     $5::integer[], $6::text[], $7::text[])
ON CONFLICT DO NOTHING;

-- name: finish_attempts
-- Only rows still leased by the attempt that finished: a lease that expired and was claimed
-- again has a higher attempt count and is left to its new holder.
UPDATE deliveries d
SET status = u.status,
    next_attempt_at = CASE WHEN u.status = 'queued'
                           THEN now() + make_interval(secs => u.delay) END,
    delivered_at = CASE WHEN u.status = 'delivered' THEN now() ELSE d.delivered_at END,
    finished_at = CASE WHEN u.status IN ('delivered', 'failed') THEN now() END,
    failure_reason = u.reason,
    locked_by = NULL
FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::float8[], $5::text[])
     AS u (notification_id, attempts, status, delay, reason)
WHERE d.notification_id = u.notification_id AND d.attempts = u.attempts
  AND d.status = 'delivering'
RETURNING d.notification_id, d.callback_id, d.subject, d.ordered, d.status;

-- name: release_successors
-- The next notification of each subject whose head just finished may now be sent.
UPDATE deliveries d
SET next_attempt_at = now()
FROM (
    SELECT DISTINCT ON (p.callback_id, p.subject) p.notification_id, p.next_attempt_at
    FROM unnest($1::bigint[], $2::uuid[]) AS f (callback_id, subject)
    JOIN deliveries p ON p.callback_id = f.callback_id AND p.subject = f.subject
    WHERE p.ordered AND p.status IN ('queued', 'delivering')
    ORDER BY p.callback_id, p.subject, p.sequence
) AS head
WHERE d.notification_id = head.notification_id AND head.next_attempt_at IS NULL
RETURNING d.notification_id;

-- name: callbacks_succeeded
UPDATE callbacks SET failing_since = NULL
WHERE id = ANY ($1::bigint[]) AND failing_since IS NOT NULL;

-- name: callbacks_failed
-- Starts the failure window of each callback that just failed (kept while it keeps failing).
UPDATE callbacks SET failing_since = now()
WHERE id = ANY ($1::bigint[]) AND failing_since IS NULL;

-- name: disable_failing_callbacks
-- Callbacks that have failed without a single success for longer than $2 seconds.
UPDATE callbacks SET enabled = false, disabled_reason = 'failing', updated_at = now()
WHERE id = ANY ($1::bigint[]) AND enabled
  AND failing_since < now() - make_interval(secs => $2)
RETURNING id;

-- name: callbacks_gone
UPDATE callbacks SET enabled = false, disabled_reason = 'gone', updated_at = now()
WHERE id = ANY ($1::bigint[])
RETURNING id;

-- name: fail_pending_of_callbacks
UPDATE deliveries
SET status = 'failed', failure_reason = $2, next_attempt_at = NULL, locked_by = NULL,
    finished_at = now()
WHERE callback_id = ANY ($1::bigint[]) AND status IN ('queued', 'delivering');

-- name: release_leases
-- A worker shutting down gives back what it claimed but did not finish, uncharged.
UPDATE deliveries
SET status = 'queued', next_attempt_at = now(), locked_by = NULL,
    attempts = attempts - 1, round_attempts = round_attempts - 1
WHERE notification_id = ANY ($1::uuid[]) AND status = 'delivering' AND locked_by = $2;
