-- name: lock_partner_subjects
-- Deleting a callback ($2) or all of a partner's ($2 NULL) deletes their subject_sequences rows
-- by cascade. Locking those rows first, in the order of lock_subjects_v1, keeps the delete from
-- deadlocking with a dispatcher that holds a subject and waits for one of the delivery rows
-- the delete is cancelling.
SELECT lock_subjects_v1(array_agg(s.callback_id), array_agg(s.subject))
FROM subject_sequences s
JOIN callbacks c ON c.id = s.callback_id
WHERE c.partner_id = $1 AND ($2::bigint IS NULL OR c.id = $2);

-- name: lock_subjects
-- Taken before changing what is pending for ordered subjects: see lock_subjects_v1.
SELECT lock_subjects_v1($1::bigint[], $2::uuid[]);

-- name: release_successors
-- The next notification of each subject whose head just finished may now be sent.
SELECT 'successor_released' AS change, callback_id, notification_id, NULL AS reason
FROM release_successors_v2($1::bigint[], $2::uuid[]);
