-- Local media (the content repository). A row is made by an upload, or by POST
-- /_matrix/media/v1/create with no content yet (uploaded_ts 0: pending, until an upload or
-- expiry). The content itself is a blob in the media store named by its SHA-256, so that
-- identical uploads share one file; width and height are an image's (0 otherwise).
CREATE TABLE media (
    media_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    uploaded_ts  BIGINT NOT NULL DEFAULT 0,
    content_type TEXT NOT NULL DEFAULT '',
    upload_name  TEXT NOT NULL DEFAULT '',
    size         BIGINT NOT NULL DEFAULT 0,
    sha256       TEXT NOT NULL DEFAULT '',
    width        INTEGER NOT NULL DEFAULT 0,
    height       INTEGER NOT NULL DEFAULT 0
);
-- Quotas sum a user's recent uploads; pending IDs are counted per user and swept by age.
CREATE INDEX media_user_uploaded ON media (user_id, uploaded_ts);
CREATE INDEX media_pending ON media (created_ts) WHERE uploaded_ts = 0;

-- Thumbnails, generated once per media and size box (width x height, crop or scale) and
-- kept as blobs like the media; width and height are the thumbnail's own.
CREATE TABLE media_thumbnails (
    media_id     TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    box_width    INTEGER NOT NULL,
    box_height   INTEGER NOT NULL,
    method       TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (media_id, box_width, box_height, method)
);
