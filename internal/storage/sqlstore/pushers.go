package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"porthole/internal/storage"
)

const pusherCols = `id, user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts`

func scanPusher(row interface{ Scan(...any) error }) (storage.Pusher, error) {
	var p storage.Pusher
	var data string
	err := row.Scan(&p.ID, &p.UserID, &p.DeviceID, &p.Kind, &p.AppID, &p.PushKey, &p.AppDisplayName, &p.DeviceDisplayName,
		&p.ProfileTag, &p.Lang, &data, &p.PushKeyTS)
	p.Data = []byte(data)
	return p, err
}

func scanPushers(rows *sql.Rows, err error) ([]storage.Pusher, error) {
	return collect(rows, err, func(rows *sql.Rows) (storage.Pusher, error) { return scanPusher(rows) })
}

func (r reader) Pushers(ctx context.Context, userID string) ([]storage.Pusher, error) {
	if userID == "" {
		return scanPushers(r.query(ctx, `SELECT `+pusherCols+` FROM pushers ORDER BY id`))
	}
	return scanPushers(r.query(ctx, `SELECT `+pusherCols+` FROM pushers WHERE user_id = $1 ORDER BY id`, userID))
}

func (r reader) Pusher(ctx context.Context, id int64) (storage.Pusher, error) {
	p, err := scanPusher(r.row(ctx, `SELECT `+pusherCols+` FROM pushers WHERE id = $1`, id))
	return p, translate(err)
}

func (t *txn) PutPusher(ctx context.Context, p storage.Pusher) (int64, error) {
	var id int64
	err := t.row(ctx, `SELECT id FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, p.UserID, p.AppID, p.PushKey).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if id, err = t.bump(ctx, "pusher"); err != nil {
			return 0, err
		}
		_, err = t.exec(ctx, `INSERT INTO pushers (`+pusherCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			id, p.UserID, p.DeviceID, p.Kind, p.AppID, p.PushKey, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, string(p.Data), p.PushKeyTS)
		return id, err
	case err != nil:
		return 0, err
	}
	// Another device may change a pusher; it stays with the device that made it.
	_, err = t.exec(ctx, `UPDATE pushers SET kind = $1, app_display_name = $2, device_display_name = $3, profile_tag = $4, lang = $5,
		data = $6, pushkey_ts = $7 WHERE id = $8`, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, string(p.Data), p.PushKeyTS, id)
	return id, err
}

func (t *txn) DeletePushers(ctx context.Context, appID, pushKey, userID, exceptUser string) ([]storage.Pusher, error) {
	if userID != "" {
		return scanPushers(t.query(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id = $3 RETURNING `+pusherCols, appID, pushKey, userID))
	}
	return scanPushers(t.query(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3 RETURNING `+pusherCols, appID, pushKey, exceptUser))
}

func (t *txn) DeletePusherByID(ctx context.Context, id int64) error {
	_, err := t.exec(ctx, `DELETE FROM pushers WHERE id = $1`, id)
	return err
}
