-- Other servers' signing keys as fetched (internal/federation), each with the signed key
-- response that listed it (kept to be passed on when this server acts as a notary).
-- (IF NOT EXISTS: a storage test replays an earlier migration over a database that has this one.)
CREATE TABLE IF NOT EXISTS server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    verify_key     TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired        BOOLEAN NOT NULL DEFAULT FALSE,
    key_json       TEXT NOT NULL,
    fetched_ts     BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The keys this server has signed with: the current one (expired_ts 0) and those it
-- replaced, published as old_verify_keys.
CREATE TABLE IF NOT EXISTS own_signing_keys (
    key_id     TEXT PRIMARY KEY,
    verify_key TEXT NOT NULL,
    expired_ts BIGINT NOT NULL DEFAULT 0
);
