-- Partners, the notification types they can subscribe to, and one callback per partner and type.

CREATE TABLE partners (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notification_types (
    id    integer PRIMARY KEY,
    name  text NOT NULL UNIQUE
);

INSERT INTO notification_types (id, name) VALUES
    (1, 'WorkflowStateChange'),
    (2, 'Notes'),
    (3, 'Document');

CREATE TABLE callbacks (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id                  uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    notification_type           integer NOT NULL REFERENCES notification_types (id),
    url                         text NOT NULL CHECK (length(url) <= 2048),
    enabled                     boolean NOT NULL DEFAULT true,
    description                 text,
    ordered_delivery            boolean NOT NULL DEFAULT false,
    signing_secret              text NOT NULL,
    -- During a rotation the old secret keeps signing (second signature) until it expires.
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    -- Start of the current run of failures without a success; NULL while healthy.
    failing_since               timestamptz,
    disabled_reason             text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, notification_type)
);
