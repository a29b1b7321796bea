-- Closed sets of statuses and reasons, one home for disabling a callback, and write functions
-- that return what they changed.
--
-- The sets are those of service/core/statuses.py (a test compares the check constraints with
-- it). A delivery's failure_reason is one word; the attempt log keeps the status and error.
-- The SQL functions carry a version in their name: a later change adds a new version beside
-- this one. This migration renames and replaces functions, so stop every callbackhub process
-- of the previous version before it runs.

UPDATE deliveries
SET failure_reason = CASE
        WHEN failure_reason LIKE 'http\_%' THEN 'http_error'
        WHEN failure_reason LIKE 'blocked\_address%' THEN 'blocked_address'
        ELSE 'connection_failed'
    END
WHERE failure_reason NOT IN ('http_error', 'timeout', 'connection_failed', 'blocked_address',
                             'gone', 'internal_error', 'callback_disabled', 'callback_deleted',
                             'partner_deleted');

ALTER TABLE deliveries ADD CONSTRAINT deliveries_failure_reason_check
    CHECK (failure_reason IN ('http_error', 'timeout', 'connection_failed', 'blocked_address',
                              'gone', 'internal_error', 'callback_disabled', 'callback_deleted',
                              'partner_deleted'));

ALTER TABLE callbacks ADD CONSTRAINT callbacks_disabled_reason_check
    CHECK (disabled_reason IN ('disabled_by_user', 'gone', 'failing'));

ALTER FUNCTION ingest_batch(uuid[], uuid[], integer[], uuid[], bytea[], text[], bytea[],
                            double precision)
    RENAME TO store_notifications_v1;
DROP FUNCTION finish_batch(uuid[], integer[], timestamptz[], integer[], integer[], text[],
                           text[], text[], double precision[], text[], bigint[], uuid[],
                           bigint[], bigint[], bigint[], double precision);
DROP FUNCTION release_successors(bigint[], uuid[]);
ALTER FUNCTION lock_subjects(bigint[], uuid[]) RENAME TO lock_subjects_v1;

-- The next notification of each subject whose head finished (or left the line) may now be
-- sent; returns the notifications released.
CREATE FUNCTION release_successors_v2(p_callbacks bigint[], p_subjects uuid[])
RETURNS TABLE (callback_id bigint, notification_id uuid)
LANGUAGE sql AS $$
    UPDATE deliveries d
    SET next_attempt_at = now()
    FROM (
        SELECT DISTINCT ON (p.callback_id, p.subject) p.notification_id, p.next_attempt_at
        FROM unnest(p_callbacks, p_subjects) AS f (callback_id, subject)
        JOIN deliveries p ON p.callback_id = f.callback_id AND p.subject = f.subject
        WHERE p.ordered AND p.status IN ('queued', 'delivering')
        ORDER BY p.callback_id, p.subject, p.sequence
    ) AS head
    WHERE d.notification_id = head.notification_id AND head.next_attempt_at IS NULL
    RETURNING d.callback_id, d.notification_id;
$$;

-- Disabling callbacks, the one place it is done: the callbacks stop receiving, with the reason
-- (disabled_by_user | gone | failing), and their pending deliveries fail for good (reason
-- 'gone' after a 410, else 'callback_disabled'; redeliver-failed brings them back once the
-- callback is enabled again). Returns what changed: 'callback_disabled' for each callback that
-- was enabled, 'notification_failed' for each delivery failed.
CREATE FUNCTION disable_callbacks_v1(p_callbacks bigint[], p_reason text)
RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE sql AS $$
    WITH previous AS (
        SELECT c.id, c.enabled FROM callbacks c
        WHERE c.id = ANY (p_callbacks)
        ORDER BY c.id
        FOR UPDATE
    ), disabled AS (
        UPDATE callbacks c
        SET enabled = false, disabled_reason = p_reason, updated_at = now()
        FROM previous
        WHERE c.id = previous.id AND (previous.enabled OR c.disabled_reason IS DISTINCT FROM p_reason)
        RETURNING c.id, previous.enabled AS was_enabled
    ), failed AS (
        UPDATE deliveries d
        SET status = 'failed',
            failure_reason = CASE WHEN p_reason = 'gone' THEN 'gone' ELSE 'callback_disabled' END,
            next_attempt_at = NULL, locked_by = NULL, finished_at = now()
        WHERE d.callback_id = ANY (p_callbacks) AND d.status IN ('queued', 'delivering')
        RETURNING d.callback_id, d.notification_id, d.failure_reason
    )
    SELECT 'callback_disabled', id, NULL::uuid, p_reason FROM disabled WHERE was_enabled
    UNION ALL
    SELECT 'notification_failed', failed.callback_id, failed.notification_id,
           failed.failure_reason
    FROM failed;
$$;

-- Recording a batch of finished attempts in one round trip, committed by the caller's single
-- statement. The locks are taken in the order of lock_subjects_v1, as echo and redeliver take
-- them.
--
-- In: per attempt its notification, attempt number, start, duration, response status, body
-- and error, and the verdict (delivered | queued | failed) with its retry delay and failure
-- reason; the ordered (callback, subject) pairs among them; the callbacks that succeeded,
-- answered 410 Gone, or failed otherwise; the seconds of failure after which a callback is
-- disabled.
-- Out: a row per change that anyone may care about:
--   notification_failed     (callback, notification, failure reason): failed for good
--   notification_recovered  (callback, notification): delivered after a failed attempt
--   successor_released      (callback, notification): next of its subject, may be sent now
--   callback_disabled       (callback, disabled reason: gone | failing)
--   callback_recovered      (callback): a success after a run of failures
CREATE FUNCTION finish_attempts_v2(
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
          AND d.status = 'delivering'
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
