-- The user directory (POST /user_directory/search): each user's profile as the directory
-- shows it (local users: their profile; remote users: their latest joined member event),
-- and the words each user is found by (internal/userdir.Words), searched by prefix. Written
-- in the transactions that change profiles and memberships; the local users of an existing
-- database are added by this migration's Go step.
CREATE TABLE user_directory (
    user_id      TEXT PRIMARY KEY,
    display_name TEXT,
    avatar_url   TEXT
);
CREATE TABLE user_directory_words (
    word    TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (word, user_id)
);
CREATE INDEX user_directory_words_user ON user_directory_words (user_id);
