-- A notification (immutable: what the emitter sent), its delivery to the partner's callback
-- (mutable: the queue row the dispatcher claims) and every attempt at that delivery.

CREATE TABLE notifications (
    id                 uuid PRIMARY KEY,
    partner_id         uuid NOT NULL,
    notification_type  integer NOT NULL REFERENCES notification_types (id),
    -- processUniqueId or simulationUniqueId: the order of delivery is kept per subject.
    subject            uuid NOT NULL,
    -- The exact bytes the emitter sent; partners verify signatures over them.
    payload            bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_partner_created ON notifications (partner_id, created_at DESC);

CREATE TABLE deliveries (
    notification_id   uuid PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    callback_id       bigint REFERENCES callbacks (id) ON DELETE SET NULL,
    partner_id        uuid NOT NULL,
    notification_type integer NOT NULL,
    subject           uuid NOT NULL,
    -- Position within (callback, subject), assigned by the echo transaction.
    sequence          bigint NOT NULL,
    ordered           boolean NOT NULL,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'delivering', 'delivered', 'failed', 'cancelled')),
    -- Attempts made in total, and in the current round (a redelivery starts a new round).
    attempts          integer NOT NULL DEFAULT 0,
    round_attempts    integer NOT NULL DEFAULT 0,
    -- When the row may next be claimed. While 'delivering' it is the lease's expiry; NULL while
    -- the row waits behind an earlier notification of the same subject.
    next_attempt_at   timestamptz,
    locked_by         text,
    last_attempt_at   timestamptz,
    delivered_at      timestamptz,
    finished_at       timestamptz,
    failure_reason    text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- The claim's index: only rows that still need work are in it.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('queued', 'delivering');
-- Finding the pending rows of one callback (cancel, disable) and of one subject (ordering).
CREATE INDEX deliveries_pending_by_subject ON deliveries (callback_id, subject, sequence)
    WHERE status IN ('queued', 'delivering');
CREATE INDEX deliveries_partner_status ON deliveries (partner_id, status, created_at DESC);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- The last sequence handed out per (callback, subject). Its row lock serialises racing echoes of
-- one subject, so sequence order is commit order.
CREATE TABLE subject_sequences (
    callback_id  bigint NOT NULL REFERENCES callbacks (id) ON DELETE CASCADE,
    subject      uuid NOT NULL,
    last_value   bigint NOT NULL,
    PRIMARY KEY (callback_id, subject)
);

CREATE TABLE delivery_attempts (
    notification_id  uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    response_status  integer,
    response_body    text,
    error            text,
    PRIMARY KEY (notification_id, attempt)
);

CREATE TABLE idempotency_keys (
    partner_id       uuid NOT NULL,
    key              text NOT NULL,
    request_hash     bytea NOT NULL,
    notification_id  uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, key)
);
