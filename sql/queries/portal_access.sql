-- name: portal_partner_exists
SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1);

-- name: insert_portal_link
INSERT INTO portal_links (code_hash, partner_id, access, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING expires_at;

-- name: use_portal_link
-- Checks and marks the code used in one statement: two requests racing on one link cannot
-- both get a session.
UPDATE portal_links
SET used_at = now()
WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now()
RETURNING partner_id, access, expires_at;

-- name: insert_portal_session
-- Ends at the link's expiry or after $5 seconds, whichever is sooner.
INSERT INTO portal_sessions (id_hash, public_id, partner_id, operator, access, expires_at)
VALUES ($1, $2, $3::uuid, $3::uuid IS NULL, $4, least($6, now() + make_interval(secs => $5)))
RETURNING public_id, partner_id, acting_partner_id, operator, access, expires_at;

-- name: live_portal_session
SELECT public_id, partner_id, acting_partner_id, operator, access, expires_at
FROM portal_sessions
WHERE id_hash = $1 AND ended_at IS NULL AND expires_at > now();

-- name: end_portal_session
UPDATE portal_sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL;

-- name: act_for_partner
UPDATE portal_sessions s
SET acting_partner_id = p.id
FROM partners p
WHERE s.id_hash = $1 AND s.operator AND s.ended_at IS NULL AND p.id = $2
RETURNING true;

-- name: revoke_portal_sessions
WITH ended AS (
    UPDATE portal_sessions SET ended_at = now()
    WHERE partner_id = $1 AND ended_at IS NULL AND expires_at > now()
    RETURNING 1
), unused AS (
    UPDATE portal_links SET used_at = now()
    WHERE partner_id = $1 AND used_at IS NULL
)
SELECT count(*) FROM ended;
