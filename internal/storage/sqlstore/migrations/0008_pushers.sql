-- HTTP pushers (POST /pushers/set). A pusher belongs to the device that created it and goes
-- with it (logout, device deletion, password change). id names its outbox destination.
CREATE TABLE pushers (
    id                  BIGINT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          BIGINT NOT NULL,
    UNIQUE (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
CREATE INDEX pushers_device ON pushers (user_id, device_id);
INSERT INTO counters (name, value) VALUES ('pusher', 0);
