-- name: one_callback_secret_per_key
-- A sample of the secrets sealed under each key id in use (the id is the value's second part).
-- (column: which of the row's sealed columns it is, for its associated data).
SELECT DISTINCT ON (split_part(stored, ':', 2)) partner_id, notification_type, stored, column_name
FROM (
    SELECT partner_id, notification_type, signing_secret AS stored, 'signing' AS column_name
    FROM callbacks
    UNION ALL
    SELECT partner_id, notification_type, previous_secret, 'signing' FROM callbacks
    WHERE previous_secret IS NOT NULL
    UNION ALL
    SELECT partner_id, notification_type, sealed_credentials, 'credentials' FROM callbacks
    WHERE sealed_credentials IS NOT NULL
) AS secrets
WHERE starts_with(stored, 'enc1:')
ORDER BY split_part(stored, ':', 2);

-- name: callback_secrets_to_reseal
-- The next batch after id $1 holding a secret that does not start with $2 (the first key's
-- prefix, or 'enc1:' to find the ones in clear).
SELECT id, partner_id, notification_type, signing_secret, previous_secret, sealed_credentials
FROM callbacks
WHERE id > $1
  AND (NOT starts_with(signing_secret, $2) OR NOT starts_with(coalesce(previous_secret, $2), $2)
       OR NOT starts_with(coalesce(sealed_credentials, $2), $2))
ORDER BY id
LIMIT $3;

-- name: count_callback_secrets_to_reseal
SELECT count(*)
FROM callbacks
WHERE NOT starts_with(signing_secret, $1) OR NOT starts_with(coalesce(previous_secret, $1), $1)
   OR NOT starts_with(coalesce(sealed_credentials, $1), $1);

-- name: reseal_callback_secrets
-- Only where the row still holds what was read: a secret rotated meanwhile is not overwritten.
UPDATE callbacks c
SET signing_secret = u.new_signing, previous_secret = u.new_previous,
    sealed_credentials = u.new_credentials
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
     AS u (id, old_signing, new_signing, old_previous, new_previous, old_credentials,
           new_credentials)
WHERE c.id = u.id
  AND c.signing_secret = u.old_signing
  AND c.previous_secret IS NOT DISTINCT FROM u.old_previous
  AND c.sealed_credentials IS NOT DISTINCT FROM u.old_credentials;

-- name: operator_webhook_secrets
SELECT signing_secret, previous_secret FROM operator_webhooks;

-- name: reseal_operator_webhook_secrets
-- Only where the row still holds what was read: a secret rotated meanwhile is not overwritten.
UPDATE operator_webhooks
SET signing_secret = $3, previous_secret = $4
WHERE signing_secret = $1 AND previous_secret IS NOT DISTINCT FROM $2;
