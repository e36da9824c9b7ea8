-- The stream position of the event a receipt points at, so unread counts need no lookup.
ALTER TABLE receipts ADD COLUMN event_pos BIGINT NOT NULL DEFAULT 0;
