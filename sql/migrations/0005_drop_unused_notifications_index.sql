-- No query reads notifications by partner: the delivery log lists deliveries (by the index
-- deliveries_partner_status) and joins notifications by id. The index only cost every echo an
-- insertion.
DROP INDEX IF EXISTS notifications_partner_created;
