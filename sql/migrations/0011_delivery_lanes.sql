-- Per-callback limits a partner sets (maxInFlight, maxPerSecond), and lanes: one dispatcher
-- process at a time delivers to a callback, so both limits hold across every dispatcher
-- together without a write per request (dispatcher/lanes.py).

-- NULL: the default (CALLBACKHUB_MAX_PER_CALLBACK), and no rate limit.
ALTER TABLE callbacks
    ADD COLUMN max_in_flight integer CHECK (max_in_flight BETWEEN 1 AND 256),
    ADD COLUMN max_per_second double precision
        CHECK (max_per_second >= 0.1 AND max_per_second <= 10000);

-- Who delivers to a callback now. The owner renews its lease while it has work for the
-- callback and gives it up when idle; a dead owner's lease expires like a delivery lease.
CREATE TABLE callback_owners (
    callback_id  bigint PRIMARY KEY REFERENCES callbacks (id) ON DELETE CASCADE,
    owner        text NOT NULL,
    expires_at   timestamptz NOT NULL
);

-- The claim walks callbacks and takes each one's oldest due deliveries: this finds them. It
-- replaces the index on next_attempt_at alone, which nothing else needs and which would tempt
-- the planner, for "this callback's oldest due row", to walk every other callback's backlog.
CREATE INDEX deliveries_due_by_callback ON deliveries (callback_id, next_attempt_at)
    WHERE status IN ('queued', 'delivering');
DROP INDEX deliveries_due;
