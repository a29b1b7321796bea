-- Per-callback delivery options: what is not secret in the clear (header names, the auth type
-- and username, the signature kind), and the secret part sealed by the service (header
-- values and the Authorization value; service.core.delivery_options). An Ed25519 callback's
-- private key is its signing_secret (whsk_…), sealed like any other.
ALTER TABLE callbacks
    ADD COLUMN delivery_options jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN sealed_credentials text;

-- An OAuth2 token endpoint that gives no token fails the attempt as auth_failed.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_failure_reason_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_failure_reason_check
    CHECK (failure_reason IN ('http_error', 'timeout', 'connection_failed', 'blocked_address',
                              'gone', 'internal_error', 'auth_failed', 'callback_disabled',
                              'callback_deleted', 'partner_deleted'));
