-- Application services (internal/appservice).

-- The outbox records the batch a destination is being sent before its first attempt, so
-- that a retry (on any node, after any crash) carries the same items: an application
-- service transaction ID always names the same events.
ALTER TABLE outbox_destinations ADD COLUMN batch_end BIGINT NOT NULL DEFAULT 0;

-- Rooms an application service published in its own directory of a third-party network
-- (PUT /directory/list/appservice/{networkId}/{roomId}).
CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id    TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
);
CREATE INDEX appservice_room_list_room ON appservice_room_list (room_id);
