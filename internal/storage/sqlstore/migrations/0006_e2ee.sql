-- End-to-end encryption: device, one-time, fallback and cross-signing keys, signatures,
-- device-list changes, to-device inboxes and server-side key backups.

-- A device's identity keys, as the device signed them.
CREATE TABLE e2e_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys are handed out once, oldest upload first (seq).
CREATE TABLE e2e_one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_order ON e2e_one_time_keys (user_id, device_id, algorithm, seq);
INSERT INTO counters (name, value) VALUES ('one_time_keys', 0);

-- At most one fallback key per algorithm; used once it was handed out.
CREATE TABLE e2e_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- usage is master, self_signing or user_signing; key_id is the unpadded base64 public key.
CREATE TABLE e2e_cross_signing_keys (
    user_id  TEXT NOT NULL,
    usage    TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, usage)
);

-- Signatures uploaded through /keys/signatures/upload: target_key_id is a device ID or a
-- master key's public key; signer_key_id is the full key ID ("ed25519:...").
CREATE TABLE e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The latest change of each user's devices or keys; only_for names the one user who is
-- told (a signature they made on someone's key, their own user-signing key), '' for
-- everyone who shares a room. One row per pair, so the table stays as large as the users.
CREATE TABLE device_list_changes (
    user_id  TEXT NOT NULL,
    only_for TEXT NOT NULL,
    pos      BIGINT NOT NULL,
    PRIMARY KEY (user_id, only_for)
);
CREATE INDEX device_list_changes_pos ON device_list_changes (pos);

-- Each device's inbox; one sendToDevice request takes one stream position.
CREATE TABLE to_device (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    sender    TEXT NOT NULL,
    type      TEXT NOT NULL,
    content   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, pos)
);
CREATE INDEX to_device_pos ON to_device (pos);

CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX to_device_txns_created ON to_device_txns (created_ts);

-- Server-side key backups. Deleted versions keep their row, so numbers are never reused.
CREATE TABLE key_backups (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE key_backup_sessions (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
