-- Rooms as event graphs (federation). Until now a room was a line of events; from here on
-- it may fork where other servers write concurrently.

-- The room's forward extremities (events nothing points at yet), as a JSON array of event
-- IDs; head_event_id stays the latest event persisted.
ALTER TABLE rooms ADD COLUMN extremities TEXT NOT NULL DEFAULT '[]';
UPDATE rooms SET extremities = '["' || head_event_id || '"]' WHERE head_event_id <> '';

-- Every change of a room's current state, at the stream position it happened: the state as
-- of any position is the latest delta per key up to it. A change may come from an older
-- event (state resolution); event_id NULL means the key left the state.
CREATE TABLE state_deltas (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    event_id  TEXT,
    PRIMARY KEY (room_id, type, state_key, pos)
);
CREATE INDEX state_deltas_room_pos ON state_deltas (room_id, pos);
INSERT INTO state_deltas (room_id, type, state_key, pos, event_id)
    SELECT room_id, type, state_key, pos, event_id FROM events WHERE state_key IS NOT NULL;

-- The state after an event, for the events whose state after is not simply the room's
-- state as of their position (events on a fork, soft-failed events): the room's state as
-- of base_pos with the group's entries on top (event_id NULL: removed). A fork differs from
-- the resolved state in a few keys, so groups stay small.
CREATE TABLE state_groups (
    group_id BIGINT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    base_pos BIGINT NOT NULL
);
CREATE TABLE state_group_entries (
    group_id  BIGINT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT,
    PRIMARY KEY (group_id, type, state_key)
);
INSERT INTO counters (name, value) VALUES ('state_group', 0);
ALTER TABLE events ADD COLUMN state_group BIGINT;

-- Events known but not part of the timeline: outliers (auth and state events fetched to
-- check others, a joined room's state), soft-failed events (accepted into the graph, hidden
-- from clients) and rejected ones (kept so that they are not fetched again). They are stored
-- once, like every event, with a position from their own range far below any timeline
-- position, and every timeline read leaves them out.
ALTER TABLE events ADD COLUMN outlier TEXT;
ALTER TABLE events ADD COLUMN outlier_reason TEXT;
INSERT INTO counters (name, value) VALUES ('outlier', -1152921504606846976);
