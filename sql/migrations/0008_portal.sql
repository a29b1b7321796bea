-- The partner portal: single-use links, the sessions they open, and the signature each
-- attempt carried (the portal shows a partner the headers that were sent).

-- A link's code is stored only as its SHA-256; opening it marks it used, once.
CREATE TABLE portal_links (
    code_hash    bytea PRIMARY KEY,
    partner_id   uuid REFERENCES partners (id) ON DELETE CASCADE,  -- NULL: an operator link
    access       text NOT NULL CHECK (access IN ('manage', 'read')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);

-- A session's id (the cookie) is stored only as its SHA-256; public_id names it in the audit
-- trail. An operator session has no partner of its own and acts for the one it picked.
CREATE TABLE portal_sessions (
    id_hash            bytea PRIMARY KEY,
    public_id          uuid NOT NULL UNIQUE,
    partner_id         uuid REFERENCES partners (id) ON DELETE CASCADE,
    acting_partner_id  uuid REFERENCES partners (id) ON DELETE SET NULL,
    operator           boolean NOT NULL,
    access             text NOT NULL CHECK (access IN ('manage', 'read')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    ended_at           timestamptz,
    CHECK (operator = (partner_id IS NULL))
);

CREATE INDEX portal_sessions_partner_idx ON portal_sessions (partner_id) WHERE ended_at IS NULL;
CREATE INDEX portal_links_expires_idx ON portal_links (expires_at);

ALTER TABLE delivery_attempts ADD COLUMN signature text;

-- finish_attempts_v2, plus the webhook-signature each attempt sent: the attempts are written
-- here with it (after the same subject locks), so v2's own insert of them finds them there.
CREATE FUNCTION finish_attempts_v3(
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
    p_disable_after double precision
) RETURNS TABLE (change text, callback_id bigint, notification_id uuid, reason text)
LANGUAGE plpgsql
VOLATILE
AS $$
BEGIN
    PERFORM lock_subjects_v1(p_ordered_callbacks, p_ordered_subjects);
    INSERT INTO delivery_attempts (notification_id, attempt, started_at, duration_ms,
                                   response_status, response_body, error, signature)
    SELECT * FROM unnest(p_ids, p_attempts, p_started, p_durations, p_statuses, p_bodies,
                         p_errors, p_signatures)
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT * FROM finish_attempts_v2(
        p_ids, p_attempts, p_started, p_durations, p_statuses, p_bodies, p_errors, p_verdicts,
        p_delays, p_reasons, p_ordered_callbacks, p_ordered_subjects, p_succeeded, p_gone,
        p_failed, p_disable_after);
END;
$$;
