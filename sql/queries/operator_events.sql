-- name: record_operator_events
-- Events of a change, in the change's transaction: see record_operator_events_v1 (0012).
SELECT change, callback_id, notification_id, reason
FROM record_operator_events_v1($1::text[], $2::jsonb[]);

-- name: list_operator_events
-- Newest first, filtered by type ($1) and status ($2) where given.
SELECT id, type, body, created_at, status, attempts, next_attempt_at, delivered_at,
       failure_reason, count(*) OVER () AS total
FROM operator_events
WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY created_at DESC, id
OFFSET $3 LIMIT $4;

-- name: count_operator_events
SELECT count(*) FROM operator_events
WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR status = $2);

-- name: get_operator_event
SELECT id, type, body, created_at, status, attempts, next_attempt_at, delivered_at,
       failure_reason
FROM operator_events WHERE id = $1;

-- name: operator_event_attempts
SELECT event_id, attempt, started_at, duration_ms, response_status, response_body, error
FROM operator_event_attempts WHERE event_id = ANY ($1::uuid[])
ORDER BY event_id, attempt;

-- name: redeliver_operator_event
-- A finished event is queued again with a fresh round of attempts (same webhook-id); one
-- still queued or under way is left alone (NULL).
UPDATE operator_events
SET status = 'queued', next_attempt_at = now(), round_attempts = 0, failure_reason = NULL,
    finished_at = NULL, locked_by = NULL
WHERE id = $1 AND status IN ('delivered', 'failed')
RETURNING id;

-- name: claim_operator_events
-- Up to $3 due events for this worker ($1), leased for $2 seconds, oldest first, with the
-- webhook's URL and secrets. Events wait while the webhook is disabled.
WITH due AS (
    SELECT e.id FROM operator_events e
    WHERE e.status IN ('queued', 'delivering') AND e.next_attempt_at <= now()
    ORDER BY e.next_attempt_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE operator_events e
SET status = 'delivering', next_attempt_at = now() + make_interval(secs => $2), locked_by = $1,
    attempts = e.attempts + 1, round_attempts = e.round_attempts + 1
FROM operator_webhooks w
WHERE e.id IN (SELECT id FROM due) AND w.enabled
RETURNING e.id, e.type, e.body::text AS body, e.attempts, e.round_attempts, w.url,
          w.signing_secret,
          CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END
              AS previous_secret;

-- name: finish_operator_events
-- Record attempts and their verdicts (delivered | queued after $9 seconds | failed), for the
-- leases still held by that attempt.
WITH attempts AS (
    INSERT INTO operator_event_attempts (event_id, attempt, started_at, duration_ms,
                                         response_status, response_body, error)
    SELECT * FROM unnest($1::uuid[], $2::integer[], $3::timestamptz[], $4::integer[],
                         $5::integer[], $6::text[], $7::text[])
    ON CONFLICT DO NOTHING
    RETURNING 1
)
UPDATE operator_events e
SET status = u.verdict,
    next_attempt_at = CASE WHEN u.verdict = 'queued' THEN now() + make_interval(secs => u.delay)
                      END,
    delivered_at = CASE WHEN u.verdict = 'delivered' THEN now() ELSE e.delivered_at END,
    finished_at = CASE WHEN u.verdict IN ('delivered', 'failed') THEN now() END,
    failure_reason = u.reason,
    locked_by = NULL
FROM unnest($1::uuid[], $2::integer[], $8::text[], $9::float8[], $10::text[])
     AS u (id, attempt, verdict, delay, reason)
WHERE e.id = u.id AND e.attempts = u.attempt AND e.status = 'delivering';

-- name: release_operator_events
-- Leased but never sent (shutting down): back to the queue, uncharged.
UPDATE operator_events
SET status = 'queued', next_attempt_at = now(), locked_by = NULL,
    attempts = attempts - 1, round_attempts = round_attempts - 1
WHERE id = ANY ($1::uuid[]) AND status = 'delivering' AND locked_by = $2;
