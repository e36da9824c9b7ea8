-- Porthole schema, version 1. Runs unchanged on SQLite and PostgreSQL.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
-- 'stream' is the global stream position; taking one locks this row until commit, so
-- positions become visible in order.
INSERT INTO counters (name, value) VALUES ('stream', 0), ('guest', 0);

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',
    is_guest      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    displayname   TEXT,
    avatar_url    TEXT,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT NOT NULL DEFAULT 0,
    last_seen_ip TEXT NOT NULL DEFAULT '',
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored as SHA-256 hashes; the token itself is never stored.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    completed  TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter    TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    creator       TEXT NOT NULL,
    published     BOOLEAN NOT NULL DEFAULT FALSE,
    head_event_id TEXT NOT NULL DEFAULT '',
    depth         BIGINT NOT NULL DEFAULT 0,
    created_pos   BIGINT NOT NULL
);

CREATE TABLE events (
    pos              BIGINT PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL REFERENCES rooms (room_id),
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    origin_ts        BIGINT NOT NULL,
    pdu              TEXT NOT NULL,
    unsigned         TEXT,
    visibility       TEXT NOT NULL,
    membership       TEXT,
    prev_membership  TEXT,
    txn_id           TEXT,
    txn_device       TEXT,
    redacted_because TEXT
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;

CREATE TABLE room_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

CREATE TABLE room_members (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    forgotten  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);
CREATE INDEX room_members_room ON room_members (room_id, membership);

CREATE TABLE txn_ids (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, txn_id)
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    pos          BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);

CREATE TABLE typing (
    room_id  TEXT PRIMARY KEY,
    user_ids TEXT NOT NULL,
    pos      BIGINT NOT NULL
);

CREATE TABLE presence (
    user_id          TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    status_msg       TEXT,
    last_active_ts   BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL DEFAULT FALSE,
    pos              BIGINT NOT NULL
);
CREATE INDEX presence_pos ON presence (pos);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type    TEXT NOT NULL,
    content TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, pos);
