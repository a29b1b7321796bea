-- Operational events for the platform team (the operator webhook, and the events it receives,
-- with their attempts), and callback health: a circuit breaker per callback and the pause a
-- partner's Retry-After asks for.
--
-- Events are written by the same transaction as the change that causes them: the SQL write
-- functions record them here (finish_attempts_v4, disable_callbacks_v2), the API's domain
-- functions through record_operator_events_v1 (service/core/operator_events.py).

-- The one operator webhook (id is always true: at most one row).
CREATE TABLE operator_webhooks (
    id                          boolean PRIMARY KEY DEFAULT true CHECK (id),
    url                         text NOT NULL,
    enabled                     boolean NOT NULL DEFAULT true,
    event_types                 text[],  -- NULL: every type
    signing_secret              text NOT NULL,  -- sealed (service.core.encryption)
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

-- An event is queued only while the webhook is enabled and subscribes to its type. body is
-- what is sent: {"type", "timestamp", "data"}.
CREATE TABLE operator_events (
    id               uuid PRIMARY KEY,
    type             text NOT NULL,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'delivering', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    round_attempts   integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz DEFAULT now(),
    locked_by        text,
    delivered_at     timestamptz,
    finished_at      timestamptz,
    failure_reason   text
);
CREATE INDEX operator_events_due ON operator_events (next_attempt_at)
    WHERE status IN ('queued', 'delivering');
CREATE INDEX operator_events_by_time ON operator_events (created_at);

CREATE TABLE operator_event_attempts (
    event_id         uuid NOT NULL REFERENCES operator_events (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    response_status  integer,
    response_body    text,
    error            text,
    PRIMARY KEY (event_id, attempt)
);

-- Callback health, written by the dispatcher that owns the callback's lane (the circuit's rules
-- are in dispatcher/circuit.py; this is their record, which the claim and the API read).
ALTER TABLE callbacks
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN circuit_opened_at timestamptz,  -- NULL: closed
    ADD COLUMN next_probe_at timestamptz,  -- an open circuit's next probe
    ADD COLUMN probe_interval double precision,  -- an open circuit's wait after a failed probe
    ADD COLUMN paused_until timestamptz,  -- a 429 or 503 with Retry-After
    ADD COLUMN last_error text;  -- the last failed attempt, as its log says it

-- The dispatchers look every second for notifications stored for a disabled callback
-- (fail_stragglers, sql/queries/callback_health.sql): few callbacks are disabled.
CREATE INDEX callbacks_disabled ON callbacks (id) WHERE NOT enabled;

-- notification.failing is sent once per notification.
ALTER TABLE deliveries ADD COLUMN failing_reported boolean NOT NULL DEFAULT false;

-- A time as the API writes it (RFC 3339 in UTC, with microseconds).
CREATE FUNCTION api_time(p_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
$$;

-- Record events: each one whose type the enabled operator webhook subscribes to is queued for
-- delivery (and the dispatchers are woken); every one, queued or not, comes back as an
-- 'operator_event' change row (reason: its type) for the metrics.
CREATE FUNCTION record_operator_events_v1(p_types text[], p_data jsonb[])
RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_queued integer;
BEGIN
    IF cardinality(p_types) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO operator_events (id, type, body)
    SELECT gen_random_uuid(), e.type,
           jsonb_build_object('type', e.type, 'timestamp', api_time(now()), 'data', e.data)
    FROM unnest(p_types, p_data) WITH ORDINALITY AS e (type, data, position)
    JOIN operator_webhooks w ON w.enabled AND (w.event_types IS NULL OR e.type = ANY (w.event_types))
    ORDER BY e.position;
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    IF v_queued > 0 THEN
        PERFORM pg_notify('callbackhub_due', '');
    END IF;
    RETURN QUERY SELECT 'operator_event', NULL::bigint, NULL::uuid, t FROM unnest(p_types) AS t;
END;
$$;

-- The last attempt of a notification, as events show it (NULL: never attempted).
CREATE FUNCTION last_attempt_json(p_notification uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', a.response_status, 'error', a.error,
                              'at', api_time(a.started_at))
    FROM delivery_attempts a
    WHERE a.notification_id = p_notification
    ORDER BY a.attempt DESC
    LIMIT 1;
$$;

-- The events of what the write functions changed: callback_disabled -> callback.disabled,
-- notification_failed -> notification.exhausted, notification_failing -> notification.failing,
-- failing_notification_delivered -> notification.recovered. Returns the changes passed in and
-- a row per event.
CREATE FUNCTION record_change_events_v1(
    p_changes text[], p_callbacks bigint[], p_notifications uuid[], p_reasons text[]
) RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_types text[];
    v_data jsonb[];
BEGIN
    WITH changed AS (
        SELECT * FROM unnest(p_changes, p_callbacks, p_notifications, p_reasons)
                      WITH ORDINALITY AS ch (change, callback_id, notification_id, reason, position)
    ), events AS (
        SELECT ch.position, 'callback.disabled' AS type,
               jsonb_build_object(
                   'partnerUniqueId', c.partner_id, 'notificationType', c.notification_type,
                   'reason', CASE ch.reason WHEN 'disabled_by_user' THEN 'manual' ELSE ch.reason END,
                   'failingSince', api_time(c.failing_since)) AS data
        FROM changed ch JOIN callbacks c ON c.id = ch.callback_id
        WHERE ch.change = 'callback_disabled'
        UNION ALL
        SELECT ch.position,
               CASE ch.change WHEN 'notification_failed' THEN 'notification.exhausted'
                              WHEN 'notification_failing' THEN 'notification.failing'
                              ELSE 'notification.recovered' END,
               jsonb_build_object(
                   'partnerUniqueId', d.partner_id, 'notificationType', d.notification_type,
                   'notificationId', d.notification_id, 'attempts', d.attempts,
                   'lastAttempt', last_attempt_json(d.notification_id))
               || CASE WHEN ch.change = 'notification_failed'
                       THEN jsonb_build_object('failureReason', d.failure_reason)
                       ELSE '{}'::jsonb END
        FROM changed ch JOIN deliveries d ON d.notification_id = ch.notification_id
        WHERE ch.change IN ('notification_failed', 'notification_failing',
                            'failing_notification_delivered')
    )
    SELECT coalesce(array_agg(e.type ORDER BY e.position), '{}'),
           coalesce(array_agg(e.data ORDER BY e.position), '{}')
      INTO v_types, v_data
      FROM events e;
    RETURN QUERY SELECT * FROM unnest(p_changes, p_callbacks, p_notifications, p_reasons);
    RETURN QUERY SELECT * FROM record_operator_events_v1(v_types, v_data);
END;
$$;

-- disable_callbacks_v1 and the events of what it changed.
CREATE FUNCTION disable_callbacks_v2(p_callbacks bigint[], p_reason text)
RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_changes text[];
    v_callbacks bigint[];
    v_notifications uuid[];
    v_reasons text[];
BEGIN
    SELECT coalesce(array_agg(d.change), '{}'), coalesce(array_agg(d.callback_id), '{}'),
           coalesce(array_agg(d.notification_id), '{}'), coalesce(array_agg(d.reason), '{}')
      INTO v_changes, v_callbacks, v_notifications, v_reasons
      FROM disable_callbacks_v1(p_callbacks, p_reason) AS d;
    RETURN QUERY SELECT * FROM record_change_events_v1(v_changes, v_callbacks, v_notifications,
                                                       v_reasons);
END;
$$;

-- finish_attempts_v3, and then:
-- - notification.failing for each notification whose failed attempts reach p_failing_after
--   (once), notification.recovered when one of those is delivered, and the events of what v3
--   changed (disabled callbacks, notifications failed for good);
-- - the health of the callbacks the dispatcher reports (p_health_*: consecutive failures, the
--   seconds until an open circuit's next probe (NULL: closed) and the probe interval, the
--   seconds a Retry-After still pauses it (NULL: none), the last error), written unless
--   another worker owns the callback now; circuit_opened / circuit_closed for a change of the
--   circuit, with their events.
CREATE FUNCTION finish_attempts_v4(
    p_ids uuid[],
    p_attempts integer[],
    p_started timestamptz[],
    p_durations integer[],
    p_statuses integer[],
    p_bodies text[],
    p_errors text[],
    p_signatures text[],
    p_verdicts text[],
    p_delays double precision[],
    p_reasons text[],
    p_ordered_callbacks bigint[],
    p_ordered_subjects uuid[],
    p_succeeded bigint[],
    p_gone bigint[],
    p_failed bigint[],
    p_disable_after double precision,
    p_failing_after integer,
    p_worker text,
    p_health_callbacks bigint[],
    p_health_failures integer[],
    p_health_probe_in double precision[],
    p_health_probe_intervals double precision[],
    p_health_paused_for double precision[],
    p_health_errors text[]
) RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_changes text[];
    v_callbacks bigint[];
    v_notifications uuid[];
    v_reasons text[];
    v_circuits bigint[];
    v_opened boolean[];
    v_types text[];
    v_data jsonb[];
BEGIN
    SELECT coalesce(array_agg(f.change), '{}'), coalesce(array_agg(f.callback_id), '{}'),
           coalesce(array_agg(f.notification_id), '{}'), coalesce(array_agg(f.reason), '{}')
      INTO v_changes, v_callbacks, v_notifications, v_reasons
      FROM finish_attempts_v3(
            p_ids, p_attempts, p_started, p_durations, p_statuses, p_bodies, p_errors,
            p_signatures, p_verdicts, p_delays, p_reasons, p_ordered_callbacks,
            p_ordered_subjects, p_succeeded, p_gone, p_failed, p_disable_after) AS f;

    -- Its own statement: it must see the attempts v3 wrote. Failed attempts are counted in
    -- the log (the attempt number also counts a lease that expired unrecorded).
    WITH failing AS (
        UPDATE deliveries d SET failing_reported = true
        FROM unnest(p_ids, p_attempts, p_verdicts) AS u (notification_id, attempt, verdict)
        WHERE d.notification_id = u.notification_id AND u.verdict <> 'delivered'
          AND u.attempt >= p_failing_after AND NOT d.failing_reported
          AND (SELECT count(*) FROM delivery_attempts a
               WHERE a.notification_id = d.notification_id
                 AND (a.response_status IS NULL OR a.response_status NOT BETWEEN 200 AND 299))
              >= p_failing_after
        RETURNING d.callback_id, d.notification_id
    ), recovered AS (
        SELECT d.callback_id, d.notification_id
        FROM unnest(p_ids, p_attempts, p_verdicts) AS u (notification_id, attempt, verdict)
        JOIN deliveries d ON d.notification_id = u.notification_id AND d.attempts = u.attempt
        -- only a notification past its failing threshold can have had notification.failing
        WHERE u.verdict = 'delivered' AND u.attempt > p_failing_after AND d.failing_reported
          AND d.status = 'delivered'
    ), noticed AS (
        SELECT 'notification_failing' AS change, f.callback_id, f.notification_id FROM failing f
        UNION ALL
        SELECT 'failing_notification_delivered', r.callback_id, r.notification_id
        FROM recovered r
    )
    SELECT v_changes || coalesce(array_agg(n.change), '{}'),
           v_callbacks || coalesce(array_agg(n.callback_id), '{}'),
           v_notifications || coalesce(array_agg(n.notification_id), '{}'),
           v_reasons || coalesce(array_agg(NULL::text), '{}')
      INTO v_changes, v_callbacks, v_notifications, v_reasons
      FROM noticed n;
    RETURN QUERY SELECT * FROM record_change_events_v1(v_changes, v_callbacks, v_notifications,
                                                       v_reasons);

    IF cardinality(p_health_callbacks) = 0 THEN
        RETURN;
    END IF;
    WITH reported AS (
        SELECT * FROM unnest(p_health_callbacks, p_health_failures, p_health_probe_in,
                             p_health_probe_intervals, p_health_paused_for, p_health_errors)
                      AS h (callback_id, failures, probe_in, probe_interval, paused_for, error)
    ), before AS (
        SELECT c.id, c.circuit_opened_at IS NOT NULL AS was_open,
               c.consecutive_failures AS failures
        FROM callbacks c JOIN reported h ON h.callback_id = c.id
        WHERE NOT EXISTS (SELECT 1 FROM callback_owners o
                          WHERE o.callback_id = c.id AND o.owner <> p_worker
                            AND o.expires_at > now())
        ORDER BY c.id
        FOR UPDATE OF c
    ), written AS (
        UPDATE callbacks c
        SET consecutive_failures = h.failures,
            circuit_opened_at = CASE WHEN h.probe_in IS NULL THEN NULL
                                     ELSE coalesce(c.circuit_opened_at, now()) END,
            next_probe_at = now() + make_interval(secs => h.probe_in),
            probe_interval = h.probe_interval,
            paused_until = now() + make_interval(secs => h.paused_for),
            last_error = coalesce(h.error, c.last_error)
        FROM reported h, before b
        WHERE c.id = h.callback_id AND b.id = c.id
        RETURNING c.id, c.partner_id, c.notification_type, b.was_open,
                  h.probe_in IS NOT NULL AS now_open, c.last_error,
                  -- a closing circuit reports the run of failures it had
                  CASE WHEN h.probe_in IS NULL THEN b.failures ELSE h.failures END AS failures
    )
    SELECT coalesce(array_agg(w.id ORDER BY w.id), '{}'),
           coalesce(array_agg(w.now_open ORDER BY w.id), '{}'),
           coalesce(array_agg(CASE WHEN w.now_open THEN 'callback.circuit_opened'
                                   ELSE 'callback.circuit_closed' END ORDER BY w.id), '{}'),
           coalesce(array_agg(jsonb_build_object(
                        'partnerUniqueId', w.partner_id, 'notificationType', w.notification_type,
                        'consecutiveFailures', w.failures, 'lastError', w.last_error)
                    ORDER BY w.id), '{}')
      INTO v_circuits, v_opened, v_types, v_data
      FROM written w
     WHERE w.was_open <> w.now_open;
    RETURN QUERY
        SELECT CASE WHEN o THEN 'circuit_opened' ELSE 'circuit_closed' END, id, NULL::uuid, NULL
        FROM unnest(v_circuits, v_opened) AS ch (id, o);
    RETURN QUERY SELECT * FROM record_operator_events_v1(v_types, v_data);
END;
$$;
