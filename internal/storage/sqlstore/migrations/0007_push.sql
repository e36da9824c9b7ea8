-- Where a member's current stretch of being joined began (a profile change keeps it; 0 when
-- not joined): unread counts and /notifications start there. Rows from before this
-- migration start at their latest membership event.
ALTER TABLE room_members ADD COLUMN joined_pos BIGINT NOT NULL DEFAULT 0;
UPDATE room_members SET joined_pos = pos WHERE membership = 'join';

-- What the push rules decided for an event: the outcome most of the room's local members
-- got (it applies to every member joined at the event but the sender and those listed in
-- push_exceptions), so a message to a room of thousands writes one row, not thousands.
CREATE TABLE push_events (
    pos       BIGINT PRIMARY KEY,
    room_id   TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    sender    TEXT NOT NULL,
    notify    BOOLEAN NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions   TEXT NOT NULL,
    ts        BIGINT NOT NULL
);
CREATE INDEX push_events_room ON push_events (room_id, pos);

-- Members whose outcome differs from the event's base outcome (a mention, a muted room, an
-- invitee who is not yet a member).
CREATE TABLE push_exceptions (
    pos       BIGINT NOT NULL,
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    notify    BOOLEAN NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions   TEXT NOT NULL,
    PRIMARY KEY (pos, user_id)
);
CREATE INDEX push_exceptions_user ON push_exceptions (user_id, pos);
CREATE INDEX push_exceptions_room ON push_exceptions (room_id, pos);

-- A user's receipts across rooms (badge counts).
CREATE INDEX receipts_user ON receipts (user_id);
