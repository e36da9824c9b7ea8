-- Lets old user-interactive auth sessions be deleted without a scan.
CREATE INDEX uia_sessions_created ON uia_sessions (created_ts);
