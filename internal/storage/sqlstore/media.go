package sqlstore

import (
	"context"
	"database/sql"

	"porthole/internal/storage"
)

const mediaCols = `media_id, user_id, created_ts, uploaded_ts, content_type, upload_name, size, sha256, width, height`

func (r reader) Media(ctx context.Context, mediaID string) (storage.Media, error) {
	var m storage.Media
	err := r.row(ctx, `SELECT `+mediaCols+` FROM media WHERE media_id = $1`, mediaID).Scan(
		&m.ID, &m.UserID, &m.CreatedTS, &m.UploadedTS, &m.ContentType, &m.UploadName, &m.Size, &m.SHA256, &m.Width, &m.Height)
	return m, translate(err)
}

func (r reader) MediaUploadedSince(ctx context.Context, userID string, since int64) (int64, error) {
	var total sql.NullInt64
	err := r.row(ctx, `SELECT SUM(size) FROM media WHERE user_id = $1 AND uploaded_ts >= $2`, userID, max(since, 1)).Scan(&total)
	return total.Int64, err
}

func (r reader) PendingMedia(ctx context.Context, userID string, since int64) (int, int64, error) {
	var n int
	var oldest sql.NullInt64
	err := r.row(ctx, `SELECT COUNT(*), MIN(created_ts) FROM media WHERE user_id = $1 AND uploaded_ts = 0 AND created_ts >= $2`,
		userID, since).Scan(&n, &oldest)
	return n, oldest.Int64, err
}

func (r reader) Thumbnail(ctx context.Context, mediaID string, boxWidth, boxHeight int, method string) (storage.Thumbnail, error) {
	t := storage.Thumbnail{MediaID: mediaID, BoxWidth: boxWidth, BoxHeight: boxHeight, Method: method}
	err := r.row(ctx, `SELECT width, height, content_type, size, sha256 FROM media_thumbnails
		WHERE media_id = $1 AND box_width = $2 AND box_height = $3 AND method = $4`, mediaID, boxWidth, boxHeight, method).Scan(
		&t.Width, &t.Height, &t.ContentType, &t.Size, &t.SHA256)
	return t, translate(err)
}

func (t *txn) CreateMedia(ctx context.Context, m storage.Media) error {
	_, err := t.exec(ctx, `INSERT INTO media (`+mediaCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		m.ID, m.UserID, m.CreatedTS, m.UploadedTS, m.ContentType, m.UploadName, m.Size, m.SHA256, m.Width, m.Height)
	return err
}

func (t *txn) CompleteMedia(ctx context.Context, m storage.Media) error {
	res, err := t.exec(ctx, `UPDATE media SET uploaded_ts = $1, content_type = $2, upload_name = $3, size = $4, sha256 = $5,
		width = $6, height = $7 WHERE media_id = $8 AND uploaded_ts = 0`,
		m.UploadedTS, m.ContentType, m.UploadName, m.Size, m.SHA256, m.Width, m.Height, m.ID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	if _, err := t.Media(ctx, m.ID); err != nil {
		return err
	}
	return storage.ErrConflict
}

func (t *txn) PutThumbnail(ctx context.Context, th storage.Thumbnail) error {
	_, err := t.exec(ctx, `INSERT INTO media_thumbnails (media_id, box_width, box_height, method, width, height, content_type, size, sha256)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		th.MediaID, th.BoxWidth, th.BoxHeight, th.Method, th.Width, th.Height, th.ContentType, th.Size, th.SHA256)
	return err
}

func (t *txn) DeleteExpiredMedia(ctx context.Context, before int64) (int64, error) {
	res, err := t.exec(ctx, `DELETE FROM media WHERE uploaded_ts = 0 AND created_ts < $1`, before)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
