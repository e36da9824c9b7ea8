-- Server administrators, where clients connect from, OpenID tokens and abuse reports.

-- An admin may look up any local user (GET /admin/whois); set with porthole create-user --admin.
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;

-- Each (device, IP address, user agent) a user's requests came from, with when it was last
-- seen: flushed from memory every few seconds, so a request costs no write.
CREATE TABLE client_ips (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, ip, user_agent)
);
CREATE INDEX client_ips_last_seen ON client_ips (last_seen);

-- OpenID tokens (POST /user/{userId}/openid/request_token), stored as SHA-256 hashes like
-- access tokens, each valid until expires_ts; other services check them over federation.
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- Reports of events, rooms and users, kept for the server's administrators. kind is
-- 'event', 'room' or 'user'; content is the request body of an event report.
CREATE TABLE reports (
    id          BIGINT PRIMARY KEY,
    kind        TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    room_id     TEXT NOT NULL DEFAULT '',
    event_id    TEXT NOT NULL DEFAULT '',
    target_user TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    content     TEXT NOT NULL DEFAULT '{}',
    received_ts BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('report', 0);
