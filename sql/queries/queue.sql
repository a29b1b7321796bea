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
          n.payload, c.url, c.signing_secret, c.sealed_credentials, c.delivery_options,
          CASE WHEN c.previous_secret_expires_at > now() THEN c.previous_secret END
              AS previous_secret;

-- name: release_leases
-- A worker shutting down gives back what it claimed but did not finish, uncharged.
UPDATE deliveries
SET status = 'queued', next_attempt_at = now(), locked_by = NULL,
    attempts = attempts - 1, round_attempts = round_attempts - 1
WHERE notification_id = ANY ($1::uuid[]) AND status = 'delivering' AND locked_by = $2;

-- name: finish_attempts
-- Finished attempts and all they change, committed in one round trip; returns the changes:
-- see finish_attempts_v3 (sql/migrations/0008) and v2 (0006).
SELECT change, callback_id, notification_id, reason
FROM finish_attempts_v3($1::uuid[], $2::integer[], $3::timestamptz[], $4::integer[],
                        $5::integer[], $6::text[], $7::text[], $8::text[], $9::text[],
                        $10::float8[], $11::text[], $12::bigint[], $13::uuid[], $14::bigint[],
                        $15::bigint[], $16::bigint[], $17::float8);

-- name: trace_contexts
-- The trace contexts stored with these notifications (read only while tracing is on).
SELECT notification_id, traceparent, tracestate
FROM notification_traces WHERE notification_id = ANY ($1::uuid[]);
