-- Full-text search of room events (POST /search): the text of each timeline message's
-- body, room name and topic, in an FTS4 table (compiled into go-sqlite3 by default, unlike
-- FTS5) whose docid is the event's stream position. Written in the event's transaction;
-- a redaction removes its target's row.
CREATE VIRTUAL TABLE event_search USING fts4(value, tokenize=unicode61);
INSERT INTO event_search (docid, value)
    SELECT pos, json_extract(pdu, '$.content.body') FROM events
    WHERE type = 'm.room.message' AND outlier IS NULL AND redacted_because IS NULL AND json_type(pdu, '$.content.body') = 'text';
INSERT INTO event_search (docid, value)
    SELECT pos, json_extract(pdu, '$.content.name') FROM events
    WHERE type = 'm.room.name' AND outlier IS NULL AND redacted_because IS NULL AND json_type(pdu, '$.content.name') = 'text';
INSERT INTO event_search (docid, value)
    SELECT pos, json_extract(pdu, '$.content.topic') FROM events
    WHERE type = 'm.room.topic' AND outlier IS NULL AND redacted_because IS NULL AND json_type(pdu, '$.content.topic') = 'text';
