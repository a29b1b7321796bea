-- The audit trail: one row per change of a partner's configuration, written in the
-- transaction of the change, never updated, and deleted only by retention.
--
-- Secrets are sealed (AES-256-GCM) by the service before they reach the callbacks table; the
-- secrets stored before this version are sealed at start-up by the service, which holds the
-- key (service.core.stored_secrets), right after this migration.

CREATE TABLE audit_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                  timestamptz NOT NULL DEFAULT now(),
    action              text NOT NULL,
    -- No foreign keys: the history of a partner outlives the partner.
    partner_id          uuid,
    notification_type   integer,
    -- {"type": token | portal | cli | system, "sub", "partnerBound", "scopes", "session"}
    actor               jsonb NOT NULL,
    client_address      text,
    request_id          text,
    -- What changed: for an update, {"changes": {field: {"before", "after"}}}. Never a secret.
    details             jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_partner_idx ON audit_events (partner_id, id);
CREATE INDEX audit_events_at_idx ON audit_events (at);

-- Append-only: UPDATE is always refused, DELETE unless expire_audit_events_v1 is removing
-- records older than its cut-off in this transaction, TRUNCATE always.
CREATE FUNCTION audit_events_append_only_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.at < nullif(current_setting('callbackhub.audit_cutoff', true), '')::timestamptz
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only_v1();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only_v1();

-- Retention: delete the records older than p_days (at most p_limit of them); returns how many.
CREATE FUNCTION expire_audit_events_v1(p_days double precision, p_limit integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_cutoff timestamptz := now() - make_interval(secs => p_days * 86400);
    v_deleted bigint;
BEGIN
    PERFORM set_config('callbackhub.audit_cutoff', v_cutoff::text, true);
    DELETE FROM audit_events
    WHERE id = ANY (ARRAY(
        SELECT id FROM audit_events WHERE at < v_cutoff ORDER BY at LIMIT p_limit));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('callbackhub.audit_cutoff', '', true);
    RETURN v_deleted;
END;
$$;

-- The dispatcher disables a callback on its own (410 Gone, or failing too long) inside
-- disable_callbacks_v1; this records those disables, in the same transaction.
CREATE FUNCTION audit_automatic_disable_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_events (action, partner_id, notification_type, actor, details)
    VALUES ('callback.disabled', NEW.partner_id, NEW.notification_type,
            '{"type": "system", "sub": "callbackhub"}',
            jsonb_build_object('reason', NEW.disabled_reason,
                               'failingSince', OLD.failing_since));
    RETURN NEW;
END;
$$;

CREATE TRIGGER callbacks_audit_automatic_disable
    AFTER UPDATE OF enabled ON callbacks
    FOR EACH ROW
    WHEN (OLD.enabled AND NOT NEW.enabled AND NEW.disabled_reason IN ('gone', 'failing'))
    EXECUTE FUNCTION audit_automatic_disable_v1();
