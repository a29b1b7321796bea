-- Tracing: the W3C trace context an echo came with (or the one callbackhub started for it),
-- kept beside its notification so that every delivery attempt joins that trace. A table of
-- its own: nothing is written, read or joined on the hot paths while tracing is off.

CREATE TABLE notification_traces (
    notification_id  uuid PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    traceparent      text NOT NULL,
    tracestate       text
);

-- store_notifications_v1, plus each item's trace context, stored in the same statement for
-- the items that were stored (not for a repeat, which keeps the first one's).
CREATE FUNCTION store_notifications_v2(
    p_ids uuid[],
    p_partners uuid[],
    p_types integer[],
    p_subjects uuid[],
    p_payloads bytea[],
    p_keys text[],
    p_hashes bytea[],
    p_key_ttl double precision,
    p_traceparents text[],
    p_tracestates text[]
) RETURNS TABLE (item integer, outcome text, stored_id uuid)
LANGUAGE sql
VOLATILE
AS $$
    WITH stored AS MATERIALIZED (
        SELECT * FROM store_notifications_v1(p_ids, p_partners, p_types, p_subjects, p_payloads,
                                             p_keys, p_hashes, p_key_ttl)
    ), traced AS (
        INSERT INTO notification_traces (notification_id, traceparent, tracestate)
        SELECT s.stored_id, p_traceparents[s.item], p_tracestates[s.item]
        FROM stored s
        WHERE s.outcome = 'stored' AND p_traceparents[s.item] IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT item, outcome, stored_id FROM stored;
$$;
