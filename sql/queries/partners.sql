-- name: insert_partner
INSERT INTO partners (id, name) VALUES ($1, $2)
ON CONFLICT (id) DO NOTHING
RETURNING id, name, created_at;

-- name: get_partner
SELECT id, name, created_at FROM partners WHERE id = $1;

-- name: partner_exists
SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1);

-- name: list_partners
SELECT id, name, created_at, count(*) OVER () AS total
FROM partners ORDER BY created_at, id OFFSET $1 LIMIT $2;

-- name: count_partners
SELECT count(*) FROM partners;

-- name: cancel_partner_deliveries
UPDATE deliveries
SET status = 'cancelled', failure_reason = 'partner_deleted', next_attempt_at = NULL,
    locked_by = NULL, finished_at = now()
WHERE partner_id = $1 AND status IN ('queued', 'delivering');

-- name: delete_partner
DELETE FROM partners WHERE id = $1 RETURNING name;
