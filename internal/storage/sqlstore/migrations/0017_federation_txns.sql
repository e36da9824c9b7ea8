-- Transactions received from other servers (PUT /_matrix/federation/v1/send/{txnId}) with
-- the answer given, so that a retried transaction gets the same answer and is not
-- processed again. Rows older than a day are deleted.
CREATE TABLE IF NOT EXISTS federation_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX IF NOT EXISTS federation_txns_received ON federation_txns (received_ts);
