-- Full-text search of room events (POST /search): the text of each timeline message's
-- body, room name and topic as an English tsvector with a GIN index, keyed by the event's
-- stream position. Written in the event's transaction; a redaction removes its target's row.
CREATE TABLE event_search (
    pos    BIGINT PRIMARY KEY,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
INSERT INTO event_search (pos, vector)
    SELECT pos, to_tsvector('english', pdu::jsonb -> 'content' ->> 'body') FROM events
    WHERE type = 'm.room.message' AND outlier IS NULL AND redacted_because IS NULL AND jsonb_typeof(pdu::jsonb -> 'content' -> 'body') = 'string';
INSERT INTO event_search (pos, vector)
    SELECT pos, to_tsvector('english', pdu::jsonb -> 'content' ->> 'name') FROM events
    WHERE type = 'm.room.name' AND outlier IS NULL AND redacted_because IS NULL AND jsonb_typeof(pdu::jsonb -> 'content' -> 'name') = 'string';
INSERT INTO event_search (pos, vector)
    SELECT pos, to_tsvector('english', pdu::jsonb -> 'content' ->> 'topic') FROM events
    WHERE type = 'm.room.topic' AND outlier IS NULL AND redacted_because IS NULL AND jsonb_typeof(pdu::jsonb -> 'content' -> 'topic') = 'string';
