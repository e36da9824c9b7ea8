-- Events of a room by their origin_server_ts (GET /rooms/{roomId}/timestamp_to_event).
CREATE INDEX events_room_ts ON events (room_id, origin_ts, pos);
