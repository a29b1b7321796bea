-- Recording a batch of delivery attempts in one round trip: the subject locks, the attempts,
-- the verdicts, the release of ordered successors and callback health, in one call that also
-- commits. (0006 replaces finish_batch and release_successors with versions that return what
-- they changed, and renames lock_subjects to lock_subjects_v1.)

-- The subjects' sequence rows, locked in a fixed order: taken by echo (ingest_batch), by
-- finish_batch and by redeliver before they change what is pending for an ordered subject.
CREATE FUNCTION lock_subjects(p_callbacks bigint[], p_subjects uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM subject_sequences s
    JOIN unnest(p_callbacks, p_subjects) AS f (callback_id, subject)
      ON s.callback_id = f.callback_id AND s.subject = f.subject
    ORDER BY s.callback_id, s.subject
    FOR UPDATE OF s;
END;
$$;

-- The next notification of each subject whose head just finished (or left the line) may now
-- be sent.
CREATE FUNCTION release_successors(p_callbacks bigint[], p_subjects uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deliveries d
    SET next_attempt_at = now()
    FROM (
        SELECT DISTINCT ON (p.callback_id, p.subject) p.notification_id, p.next_attempt_at
        FROM unnest(p_callbacks, p_subjects) AS f (callback_id, subject)
        JOIN deliveries p ON p.callback_id = f.callback_id AND p.subject = f.subject
        WHERE p.ordered AND p.status IN ('queued', 'delivering')
        ORDER BY p.callback_id, p.subject, p.sequence
    ) AS head
    WHERE d.notification_id = head.notification_id AND head.next_attempt_at IS NULL;
END;
$$;

-- In: per attempt its notification, attempt number, start, duration, response status, body
-- and error, and the verdict (delivered | queued | failed) with its retry delay and reason;
-- the ordered (callback, subject) pairs among them; the callbacks that succeeded, answered
-- 410 Gone, or failed otherwise; the seconds of failure after which a callback is disabled.
CREATE FUNCTION finish_batch(
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
) RETURNS void
LANGUAGE plpgsql
VOLATILE  -- each statement sees what the ones before it changed
AS $$
DECLARE
    v_heads_callbacks bigint[];
    v_heads_subjects uuid[];
    v_disabled bigint[];
BEGIN
    PERFORM lock_subjects(p_ordered_callbacks, p_ordered_subjects);

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
          AND d.status = 'delivering'
        RETURNING d.callback_id, d.subject, d.ordered, d.status
    )
    SELECT array_agg(callback_id), array_agg(subject)
      INTO v_heads_callbacks, v_heads_subjects
      FROM finished WHERE ordered AND status IN ('delivered', 'failed');
    IF v_heads_callbacks IS NOT NULL THEN
        PERFORM release_successors(v_heads_callbacks, v_heads_subjects);
    END IF;

    -- Callback health: a success closes the failure window; 410 Gone disables at once; other
    -- failures open the window, and disable the callbacks that have failed for too long.
    UPDATE callbacks SET failing_since = NULL
    WHERE id = ANY (p_succeeded) AND failing_since IS NOT NULL;

    IF cardinality(p_gone) > 0 THEN
        UPDATE callbacks SET enabled = false, disabled_reason = 'gone', updated_at = now()
        WHERE id = ANY (p_gone);
        UPDATE deliveries
        SET status = 'failed', failure_reason = 'gone', next_attempt_at = NULL,
            locked_by = NULL, finished_at = now()
        WHERE callback_id = ANY (p_gone) AND status IN ('queued', 'delivering');
    END IF;

    IF cardinality(p_failed) > 0 THEN
        UPDATE callbacks SET failing_since = now()
        WHERE id = ANY (p_failed) AND failing_since IS NULL;
        WITH disabled AS (
            UPDATE callbacks SET enabled = false, disabled_reason = 'failing', updated_at = now()
            WHERE id = ANY (p_failed) AND enabled
              AND failing_since < now() - make_interval(secs => p_disable_after)
            RETURNING id
        )
        SELECT array_agg(id) INTO v_disabled FROM disabled;
        IF v_disabled IS NOT NULL THEN
            UPDATE deliveries
            SET status = 'failed', failure_reason = 'callback_disabled', next_attempt_at = NULL,
                locked_by = NULL, finished_at = now()
            WHERE callback_id = ANY (v_disabled) AND status IN ('queued', 'delivering');
        END IF;
    END IF;
END;
$$;
