-- Write-backs look their rows up by notification id, whatever the statistics say.
--
-- finish_attempts_v2 updated "WHERE d.notification_id = u.notification_id ... AND d.status =
-- 'delivering'". Statistics taken while nothing was being delivered estimate one 'delivering'
-- row, so the planner walked every delivering row (through deliveries_partner_status) and
-- compared each with every finished attempt: with deliveries claimed ahead that is thousands x
-- hundreds per write-back (400 ms for 500 attempts with 2,236 rows delivering, measured by
-- make bench). The status test inside a CASE means the same, but the planner can neither serve
-- it from an index nor estimate it from the statistics, so it finds each attempt's row by its
-- primary key. ("IS NOT DISTINCT FROM" is not enough: it is still estimated from the
-- statistics, and the planner then scanned the table for the "one" delivering row.) The same
-- signature and behaviour: dispatchers of any version call it as before.

CREATE OR REPLACE FUNCTION finish_attempts_v2(
    p_ids uuid[],
    p_attempts integer[],
    p_started timestamptz[],
    p_durations integer[],
    p_statuses integer[],
    p_bodies text[],
    p_errors text[],
    p_verdicts text[],
    p_delays double precision[],
    p_reasons text[],
    p_ordered_callbacks bigint[],
    p_ordered_subjects uuid[],
    p_succeeded bigint[],
    p_gone bigint[],
    p_failed bigint[],
    p_disable_after double precision
) RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE plpgsql
VOLATILE  -- each statement sees what the ones before it changed
AS $$
#variable_conflict use_column
DECLARE
    v_heads_callbacks bigint[];
    v_heads_subjects uuid[];
    v_failing_too_long bigint[];
    v_callbacks bigint[];
    v_ids uuid[];
    v_subjects uuid[];
    v_ordered boolean[];
    v_statuses text[];
    v_attempts integer[];
    v_reasons text[];
BEGIN
    PERFORM lock_subjects_v1(p_ordered_callbacks, p_ordered_subjects);

    INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms,
                                   response_status, response_body, error)
    SELECT * FROM unnest(p_ids, p_attempts, p_started, p_durations, p_statuses, p_bodies,
                         p_errors)
    ON CONFLICT DO NOTHING;

    -- Only rows still leased by the attempt that finished: a lease that expired and was
    -- claimed again has a higher attempt count and is left to its new holder.
    WITH finished AS (
        UPDATE deliveries d
        SET status = u.status,
            next_attempt_at = CASE WHEN u.status = 'queued'
                                   THEN now() + make_interval(secs => u.delay) END,
            delivered_at = CASE WHEN u.status = 'delivered' THEN now() ELSE d.delivered_at END,
            finished_at = CASE WHEN u.status IN ('delivered', 'failed') THEN now() END,
            failure_reason = u.reason,
            locked_by = NULL
        FROM unnest(p_ids, p_attempts, p_verdicts, p_delays, p_reasons)
             AS u (notification_id, attempts, status, delay, reason)
        WHERE d.notification_id = u.notification_id AND d.attempts = u.attempts
          AND CASE WHEN d.status = 'delivering' THEN true ELSE false END  -- see above
        RETURNING d.callback_id, d.notification_id, d.subject, d.ordered, d.status, d.attempts,
                  d.failure_reason
    )
    SELECT coalesce(array_agg(f.callback_id), '{}'), coalesce(array_agg(f.notification_id), '{}'),
           coalesce(array_agg(f.subject), '{}'), coalesce(array_agg(f.ordered), '{}'),
           coalesce(array_agg(f.status), '{}'), coalesce(array_agg(f.attempts), '{}'),
           coalesce(array_agg(f.failure_reason), '{}')
      INTO v_callbacks, v_ids, v_subjects, v_ordered, v_statuses, v_attempts, v_reasons
      FROM finished f;

    RETURN QUERY
        SELECT CASE WHEN f.status = 'failed' THEN 'notification_failed'
                    ELSE 'notification_recovered' END,
               f.callback_id, f.notification_id, f.reason
        FROM unnest(v_callbacks, v_ids, v_statuses, v_attempts, v_reasons)
             AS f (callback_id, notification_id, status, attempts, reason)
        WHERE f.status = 'failed'
           OR (f.status = 'delivered' AND f.attempts > 1 AND EXISTS (
                   SELECT 1 FROM delivery_attempts a
                   WHERE a.notification_id = f.notification_id AND a.attempt < f.attempts
                     AND (a.response_status IS NULL OR a.response_status NOT BETWEEN 200 AND 299)));

    -- Callback health: a success closes the failure window; 410 Gone disables at once; other
    -- failures open the window, and disable the callbacks that have failed for too long.
    RETURN QUERY
        WITH recovered AS (
            UPDATE callbacks c SET failing_since = NULL
            WHERE c.id = ANY (p_succeeded) AND c.failing_since IS NOT NULL
            RETURNING c.id
        )
        SELECT 'callback_recovered', recovered.id, NULL::uuid, NULL FROM recovered;

    IF cardinality(p_gone) > 0 THEN
        RETURN QUERY SELECT * FROM disable_callbacks_v1(p_gone, 'gone');
    END IF;

    IF cardinality(p_failed) > 0 THEN
        UPDATE callbacks c SET failing_since = now()
        WHERE c.id = ANY (p_failed) AND c.failing_since IS NULL;
        SELECT array_agg(c.id ORDER BY c.id) INTO v_failing_too_long
          FROM callbacks c
         WHERE c.id = ANY (p_failed) AND c.enabled
           AND c.failing_since < now() - make_interval(secs => p_disable_after);
        IF v_failing_too_long IS NOT NULL THEN
            RETURN QUERY SELECT * FROM disable_callbacks_v1(v_failing_too_long, 'failing');
        END IF;
    END IF;
    -- Last, once disabling has failed what it fails: the next notification of each subject
    -- whose head finished may now be sent.
    SELECT array_agg(f.callback_id), array_agg(f.subject)
      INTO v_heads_callbacks, v_heads_subjects
      FROM unnest(v_callbacks, v_subjects, v_ordered, v_statuses)
           AS f (callback_id, subject, ordered, status)
     WHERE f.ordered AND f.status IN ('delivered', 'failed');
    IF v_heads_callbacks IS NOT NULL THEN
        RETURN QUERY
            SELECT 'successor_released', r.callback_id, r.notification_id, NULL
            FROM release_successors_v2(v_heads_callbacks, v_heads_subjects) AS r;
    END IF;
END;
$$;
-- The write-back locks the subjects of its ordered attempts (twice: v3, then v2); for a batch
-- with none the lookup still cost a quarter of a millisecond per call. Same behaviour.
CREATE OR REPLACE FUNCTION lock_subjects_v1(p_callbacks bigint[], p_subjects uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_callbacks) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM subject_sequences s
    JOIN unnest(p_callbacks, p_subjects) AS f (callback_id, subject)
      ON s.callback_id = f.callback_id AND s.subject = f.subject
    ORDER BY s.callback_id, s.subject
    FOR UPDATE OF s;
END;
$$;
