-- The durable outbox (internal/outbox): per destination, its queue position counter, its
-- backoff and the lease that lets one node at a time deliver to it.
CREATE TABLE outbox_destinations (
    kind        TEXT NOT NULL,
    destination TEXT NOT NULL,
    next_seq    BIGINT NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    retry_ts    BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, destination)
);

-- Queued items, in each destination's order.
CREATE TABLE outbox_items (
    kind        TEXT NOT NULL,
    destination TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    payload     BYTEA NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (kind, destination, seq)
);
