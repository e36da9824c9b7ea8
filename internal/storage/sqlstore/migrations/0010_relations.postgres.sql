-- Relations between events: one row per child whose content's m.relates_to names a
-- rel_type and a parent event_id, with what aggregations need of the child (so that
-- bundling reads neither PDUs nor the events table). A redacted child loses its row.
CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    relates_to_id   TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    aggregation_key TEXT NOT NULL DEFAULT '',
    new_content     BOOLEAN NOT NULL DEFAULT FALSE,
    pos             BIGINT NOT NULL,
    type            TEXT NOT NULL,
    sender          TEXT NOT NULL,
    origin_ts       BIGINT NOT NULL,
    visibility      TEXT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type, pos);

-- Each thread root with its latest reply, for GET /threads (latest activity first).
CREATE TABLE threads (
    room_id         TEXT NOT NULL,
    thread_id       TEXT NOT NULL,
    latest_event_id TEXT NOT NULL,
    latest_pos      BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id)
);
CREATE INDEX threads_room_latest ON threads (room_id, latest_pos);

-- Events stored before this migration.
INSERT INTO event_relations (event_id, room_id, relates_to_id, rel_type, aggregation_key, new_content, pos, type, sender, origin_ts, visibility)
SELECT event_id, room_id, rel ->> 'event_id', rel ->> 'rel_type',
    CASE WHEN json_typeof(rel -> 'key') = 'string' THEN rel ->> 'key' ELSE '' END,
    COALESCE(json_typeof(content -> 'm.new_content') = 'object', FALSE),
    pos, type, sender, origin_ts, visibility
FROM (SELECT e.*, e.pdu::json -> 'content' AS content, e.pdu::json -> 'content' -> 'm.relates_to' AS rel FROM events e) AS x
WHERE json_typeof(rel -> 'rel_type') = 'string' AND json_typeof(rel -> 'event_id') = 'string';

INSERT INTO threads (room_id, thread_id, latest_event_id, latest_pos)
SELECT r.room_id, r.relates_to_id, r.event_id, r.pos FROM event_relations r
WHERE r.rel_type = 'm.thread' AND r.pos = (SELECT MAX(r2.pos) FROM event_relations r2
    WHERE r2.room_id = r.room_id AND r2.relates_to_id = r.relates_to_id AND r2.rel_type = 'm.thread');
