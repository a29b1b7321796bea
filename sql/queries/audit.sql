-- name: insert_audit_event
INSERT INTO audit_events (action, partner_id, notification_type, actor, client_address,
                          request_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: list_audit_events
-- Newest first; each filter applies when given. $3 matches the actor's sub.
SELECT id, at, action, partner_id AS partner_unique_id, notification_type, actor, client_address, request_id,
       details, count(*) OVER () AS total
FROM audit_events
WHERE ($1::uuid IS NULL OR partner_id = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR actor ->> 'sub' = $3)
  AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::timestamptz IS NULL OR at < $5)
ORDER BY id DESC
OFFSET $6 LIMIT $7;

-- name: count_audit_events
SELECT count(*)
FROM audit_events
WHERE ($1::uuid IS NULL OR partner_id = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR actor ->> 'sub' = $3)
  AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::timestamptz IS NULL OR at < $5);

-- name: expire_audit_events
SELECT expire_audit_events_v1($1, $2);

-- name: audit_partner_exists
SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1);
