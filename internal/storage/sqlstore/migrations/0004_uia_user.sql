-- The user a completed user-interactive auth session acted for, so that a password change,
-- logout from every device or deactivation can end the user's sessions.
ALTER TABLE uia_sessions ADD COLUMN user_id TEXT;
CREATE INDEX uia_sessions_user ON uia_sessions (user_id);
