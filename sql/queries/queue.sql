-- name: claim_lanes
-- Claim due deliveries lane by lane for this worker ($1), leased for $2 seconds:
-- - for the callbacks it already owns ($3, wanting $4 more each; 0 wants none now) while its
--   ownership has at least half its lease left (another worker may hold a lapsed one now);
-- - and for half of (at most $5) callbacks nobody owns (or whose owner's lease lapsed) with
--   due work, oldest due first, which it takes ownership of, $6 x the callback's maxInFlight each
--   ($7 when it has none), or a second's worth for a callback with a maxPerSecond.
-- Each lane gets its own oldest due deliveries: a backlog at one callback never crowds out
-- another's. Expired delivery leases ('delivering' past next_attempt_at) are claimed again.
-- A callback paused by a Retry-After, or whose circuit is open, is not taken on before its
-- time; when its circuit's probe is due it gets one delivery, the one tried least (a probe
-- that fails costs a notification one attempt, not one per probe). $8: the owned callbacks
-- whose lane wants its probe.
WITH mine AS (
    -- no write: a lane's ownership is renewed by renew_lanes well before it could lapse, so
    -- one with less than half its lease left is simply not claimed for now
    SELECT o.callback_id, m.want, o.callback_id = ANY ($8::bigint[]) AS probe
    FROM callback_owners o
    JOIN unnest($3::bigint[], $4::integer[]) AS m (callback_id, want)
      ON m.callback_id = o.callback_id
    WHERE o.owner = $1 AND o.expires_at > now() + make_interval(secs => $2 / 2)
      AND m.want > 0
), unowned AS (
    SELECT c.id AS callback_id,
           -- a paced callback gets about a second's worth (dispatcher/lanes.py, Lane.depth)
           CASE WHEN c.circuit_opened_at IS NOT NULL THEN 1
                WHEN c.max_per_second IS NULL THEN $6 * coalesce(c.max_in_flight, $7)
                ELSE least($6 * coalesce(c.max_in_flight, $7),
                           greatest(1, ceil(c.max_per_second))::integer)
           END AS want,
           c.circuit_opened_at IS NOT NULL AS probe,
           first_due.at
    FROM callbacks c
    CROSS JOIN LATERAL (
        SELECT d.next_attempt_at AS at
        FROM deliveries d
        WHERE d.callback_id = c.id AND d.status IN ('queued', 'delivering')
          AND d.next_attempt_at <= now()
        ORDER BY d.callback_id, d.next_attempt_at  -- deliveries_due_by_callback's order
        LIMIT 1
    ) first_due
    LEFT JOIN callback_owners o ON o.callback_id = c.id
    WHERE $5 > 0 AND c.enabled AND c.id <> ALL ($3::bigint[])
      AND (o.callback_id IS NULL OR o.expires_at < now() OR o.owner = $1)
      AND (c.next_probe_at IS NULL OR c.next_probe_at <= now())
      AND (c.paused_until IS NULL OR c.paused_until <= now())
    ORDER BY first_due.at
    LIMIT $5
), free AS (
    -- half of them (at least one): dispatchers racing for new work each get some of it
    SELECT * FROM unowned
    ORDER BY at
    LIMIT greatest(1, ceil((SELECT count(*) FROM unowned) / 2.0))::integer
), taken AS (
    INSERT INTO callback_owners (callback_id, owner, expires_at)
    SELECT callback_id, $1, now() + make_interval(secs => $2) FROM free
    ON CONFLICT (callback_id) DO UPDATE
        SET owner = excluded.owner, expires_at = excluded.expires_at
        WHERE callback_owners.expires_at < now() OR callback_owners.owner = excluded.owner
    RETURNING callback_id
), lanes AS (
    SELECT callback_id, want, probe FROM mine
    UNION ALL
    SELECT free.callback_id, free.want, free.probe FROM free JOIN taken USING (callback_id)
), chosen AS (
    SELECT due.notification_id
    FROM lanes
    CROSS JOIN LATERAL (
        SELECT d.notification_id
        FROM deliveries d
        WHERE d.callback_id = lanes.callback_id AND d.status IN ('queued', 'delivering')
          AND d.next_attempt_at <= now()
        ORDER BY d.callback_id, d.next_attempt_at  -- deliveries_due_by_callback's order
        LIMIT lanes.want
        FOR UPDATE SKIP LOCKED
    ) due
    WHERE NOT lanes.probe
    UNION ALL
    SELECT probe.notification_id
    FROM lanes
    CROSS JOIN LATERAL (
        SELECT d.notification_id
        FROM deliveries d
        WHERE d.callback_id = lanes.callback_id AND d.status IN ('queued', 'delivering')
          AND d.next_attempt_at <= now()
        ORDER BY d.attempts, d.next_attempt_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) probe
    WHERE lanes.probe
)
UPDATE deliveries d
SET status = 'delivering',
    next_attempt_at = now() + make_interval(secs => $2),
    locked_by = $1,
    attempts = d.attempts + 1,
    round_attempts = d.round_attempts + 1,
    last_attempt_at = now()
FROM notifications n, callbacks c
-- An array, not a join with chosen: the planner cannot know how few rows chosen holds, and
-- would hash the whole queue to join them; by their ids it looks each one up.
WHERE d.notification_id = ANY (ARRAY(SELECT notification_id FROM chosen))
  AND n.id = d.notification_id
  AND c.id = d.callback_id
RETURNING d.notification_id, d.callback_id, d.notification_type, d.attempts, d.round_attempts,
          d.sequence, d.ordered, d.subject, d.partner_id, n.created_at AS accepted_at,
          n.payload, c.url, c.signing_secret, c.sealed_credentials,
          c.delivery_options::text AS delivery_options,  -- parsed once per callback
          CASE WHEN c.previous_secret_expires_at > now() THEN c.previous_secret END
              AS previous_secret,
          c.max_in_flight, c.max_per_second, c.consecutive_failures,
          c.circuit_opened_at IS NOT NULL AS circuit_open, c.probe_interval, c.last_error;

-- name: renew_lanes
-- Keep what this worker ($1) holds for another $2 seconds: its ownership of callbacks ($3)
-- and the leases of the deliveries it claimed ahead but has not sent yet ($4); give up the
-- callbacks it has no more work for ($5). Returns the callbacks it still owns: one missing
-- lapsed and may be someone else's now. The status test inside a CASE, here and below: the rows
-- are found by id, never through an index on status or a scan (sql/migrations/0013).
WITH owned AS (
    UPDATE callback_owners
    SET expires_at = now() + make_interval(secs => $2)
    WHERE owner = $1 AND callback_id = ANY ($3::bigint[]) AND expires_at >= now()
    RETURNING callback_id
), leased AS (
    UPDATE deliveries
    SET next_attempt_at = now() + make_interval(secs => $2)
    WHERE notification_id = ANY ($4::uuid[]) AND CASE WHEN status = 'delivering' THEN true ELSE false END
      AND locked_by = $1
      AND callback_id IN (SELECT callback_id FROM owned)
    RETURNING 1
), released AS (
    DELETE FROM callback_owners WHERE owner = $1 AND callback_id = ANY ($5::bigint[])
    RETURNING 1
)
SELECT callback_id FROM owned;

-- name: release_leases
-- A worker gives back what it claimed but did not send or finish, uncharged (shutting down,
-- or a lane whose ownership lapsed), and the callbacks it owned ($3).
WITH released AS (
    DELETE FROM callback_owners WHERE owner = $2 AND callback_id = ANY ($3::bigint[])
    RETURNING 1
)
UPDATE deliveries
SET status = 'queued', next_attempt_at = now(), locked_by = NULL,
    attempts = attempts - 1, round_attempts = round_attempts - 1
WHERE notification_id = ANY ($1::uuid[]) AND CASE WHEN status = 'delivering' THEN true ELSE false END
  AND locked_by = $2;

-- name: finish_attempts
-- Finished attempts and all they change, with the callbacks' health and the operational
-- events, committed in one round trip; returns the changes: see finish_attempts_v4
-- (sql/migrations/0012), v3 (0008) and v2 (0006).
SELECT change, callback_id, notification_id, reason
FROM finish_attempts_v4($1::uuid[], $2::integer[], $3::timestamptz[], $4::integer[],
                        $5::integer[], $6::text[], $7::text[], $8::text[], $9::text[],
                        $10::float8[], $11::text[], $12::bigint[], $13::uuid[], $14::bigint[],
                        $15::bigint[], $16::bigint[], $17::float8, $18::integer, $19::text,
                        $20::bigint[], $21::integer[], $22::float8[], $23::float8[],
                        $24::float8[], $25::text[]);

-- name: trace_contexts
-- The trace contexts stored with these notifications (read only while tracing is on).
SELECT notification_id, traceparent, tracestate
FROM notification_traces WHERE notification_id = ANY ($1::uuid[]);
