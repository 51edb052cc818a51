-- Deliveries are listed by id; the index on received_at was never used.
DROP INDEX deliveries_received;
