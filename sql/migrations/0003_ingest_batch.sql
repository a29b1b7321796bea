-- Storing a batch of echoes in one round trip: the callback lookup, the Idempotency-Keys, the
-- subjects' sequence numbers and the inserts, in one call that also commits (the caller runs
-- it outside a transaction), so that a batch costs one round trip however busy the event loop.
-- (Renamed store_notifications_v1 by 0006.)
--
-- In:  one array element per item (notification id, partner, type, subject, payload,
--      Idempotency-Key or NULL, request hash or NULL), and the keys' time to live in seconds.
-- Out: a row per item: its 1-based position, its outcome (stored | repeat | key_reused |
--      partner_not_found | callback_not_found | callback_disabled), and the notification id
--      (the stored one, or for a repeat the one stored first under the key).
CREATE FUNCTION ingest_batch(
    p_ids uuid[],
    p_partners uuid[],
    p_types integer[],
    p_subjects uuid[],
    p_payloads bytea[],
    p_keys text[],
    p_hashes bytea[],
    p_key_ttl double precision
) RETURNS TABLE (item integer, outcome text, stored_id uuid)
LANGUAGE plpgsql
VOLATILE  -- each statement below takes a new snapshot (step 4 depends on it)
AS $$
#variable_conflict use_column
DECLARE
    v_outcome text[];
    v_id uuid[] := p_ids;
    v_callback bigint[];
    v_ordered boolean[];
    v_positions integer[];
    v_sequences bigint[];
    v_key record;
    v_held record;
    v_any_ready boolean;
BEGIN
    -- 1. Each item's callback; an item without an enabled one gets its refusal.
    SELECT array_agg(
               CASE
                   WHEN c.id IS NULL AND EXISTS (SELECT 1 FROM partners p WHERE p.id = i.partner)
                       THEN 'callback_not_found'
                   WHEN c.id IS NULL THEN 'partner_not_found'
                   WHEN NOT c.enabled THEN 'callback_disabled'
                   ELSE 'stored'
               END ORDER BY i.pos),
           array_agg(c.id ORDER BY i.pos),
           array_agg(coalesce(c.ordered_delivery, false) ORDER BY i.pos)
      INTO v_outcome, v_callback, v_ordered
      FROM (SELECT s.pos, p_partners[s.pos] AS partner, p_types[s.pos] AS kind
              FROM generate_subscripts(p_ids, 1) AS s (pos)) AS i
      LEFT JOIN callbacks c ON c.partner_id = i.partner AND c.notification_type = i.kind;

    -- 2. Idempotency keys, taken in a fixed order so that two batches never wait for each other
    --    in a circle. A key held by an earlier request makes this item a repeat of it (same
    --    body) or a conflict (another body); a holder older than the time to live is replaced.
    FOR v_key IN
        SELECT s.pos, p_partners[s.pos] AS partner, p_keys[s.pos] AS key, p_hashes[s.pos] AS hash
          FROM generate_subscripts(p_ids, 1) AS s (pos)
         WHERE p_keys[s.pos] IS NOT NULL AND v_outcome[s.pos] = 'stored'
         ORDER BY p_partners[s.pos], p_keys[s.pos] COLLATE "C"
    LOOP
        INSERT INTO idempotency_keys AS held (partner_id, key, request_hash, notification_id)
        VALUES (v_key.partner, v_key.key, v_key.hash, p_ids[v_key.pos])
        ON CONFLICT (partner_id, key) DO UPDATE SET
            request_hash = excluded.request_hash,
            notification_id = excluded.notification_id,
            created_at = now()
        WHERE held.created_at < now() - make_interval(secs => p_key_ttl);
        IF NOT FOUND THEN
            SELECT request_hash, notification_id INTO v_held
              FROM idempotency_keys WHERE partner_id = v_key.partner AND key = v_key.key;
            IF v_held.request_hash = v_key.hash THEN
                v_outcome[v_key.pos] := 'repeat';
                v_id[v_key.pos] := v_held.notification_id;
            ELSE
                v_outcome[v_key.pos] := 'key_reused';
            END IF;
        END IF;
    END LOOP;

    -- 3. Sequence numbers per (callback, subject) in arrival order, reserved in a fixed order of
    --    rows so that concurrent batches cannot deadlock. Each row's lock serialises racing
    --    echoes of one subject until the first commits: sequence order is commit order.
    WITH wanted AS (
        SELECT s.pos, v_callback[s.pos] AS callback_id, p_subjects[s.pos] AS subject
          FROM generate_subscripts(p_ids, 1) AS s (pos)
         WHERE v_outcome[s.pos] = 'stored'
    ), counted AS (
        SELECT callback_id, subject, count(*) AS reserved FROM wanted GROUP BY 1, 2
    ), reserved AS (
        INSERT INTO subject_sequences AS q (callback_id, subject, last_value)
        SELECT callback_id, subject, reserved FROM counted ORDER BY callback_id, subject
        ON CONFLICT (callback_id, subject) DO UPDATE
            SET last_value = q.last_value + excluded.last_value
        RETURNING q.callback_id, q.subject, q.last_value
    ), numbered AS (
        SELECT w.pos,
               r.last_value - c.reserved
                   + row_number() OVER (PARTITION BY w.callback_id, w.subject ORDER BY w.pos)
                   AS sequence
          FROM wanted w
          JOIN counted c ON c.callback_id = w.callback_id AND c.subject = w.subject
          JOIN reserved r ON r.callback_id = w.callback_id AND r.subject = w.subject
    )
    SELECT coalesce(array_agg(pos ORDER BY pos), '{}'),
           coalesce(array_agg(sequence ORDER BY pos), '{}')
      INTO v_positions, v_sequences
      FROM numbered;

    -- 4. Store. A new statement, so a new snapshot taken after step 3's locks are held: it sees
    --    an earlier notification of the same subject that committed while this batch waited.
    --    An ordered item is ready only when nothing earlier of its subject is still pending.
    WITH stored AS (
        SELECT s.pos, s.sequence, p_ids[s.pos] AS id, p_partners[s.pos] AS partner_id,
               p_types[s.pos] AS notification_type, p_subjects[s.pos] AS subject,
               p_payloads[s.pos] AS payload, v_callback[s.pos] AS callback_id,
               v_ordered[s.pos] AS ordered
          FROM unnest(v_positions, v_sequences) AS s (pos, sequence)
    ), judged AS (
        SELECT stored.*,
               CASE
                   WHEN NOT stored.ordered THEN true
                   -- an earlier item of the same subject in this batch
                   WHEN EXISTS (SELECT 1 FROM stored e
                                 WHERE e.callback_id = stored.callback_id
                                   AND e.subject = stored.subject
                                   AND e.sequence < stored.sequence) THEN false
                   ELSE NOT EXISTS (SELECT 1 FROM deliveries d
                                     WHERE d.callback_id = stored.callback_id
                                       AND d.subject = stored.subject
                                       AND d.ordered AND d.status IN ('queued', 'delivering'))
               END AS ready
          FROM stored
    ), notifications_in AS (
        INSERT INTO notifications (id, partner_id, notification_type, subject, payload)
        SELECT id, partner_id, notification_type, subject, payload FROM judged
    ), deliveries_in AS (
        INSERT INTO deliveries (notification_id, callback_id, partner_id, notification_type,
                                subject, sequence, ordered, next_attempt_at)
        SELECT id, callback_id, partner_id, notification_type, subject, sequence, ordered,
               CASE WHEN ready THEN now() END
          FROM judged
    )
    SELECT bool_or(ready) INTO v_any_ready FROM judged;

    -- Wake the dispatchers (delivered at commit) when anything can be sent now.
    IF v_any_ready THEN
        PERFORM pg_notify('callbackhub_due', '');
    END IF;

    RETURN QUERY
        SELECT s.pos, v_outcome[s.pos], v_id[s.pos] FROM generate_subscripts(p_ids, 1) AS s (pos);
END;
$$;
