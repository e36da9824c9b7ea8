package sqlstore

import (
	"context"
	"database/sql"

	"porthole/internal/storage"
)

func (r reader) ClientIPs(ctx context.Context, userID string) ([]storage.ClientIP, error) {
	rows, err := r.query(ctx, `SELECT user_id, device_id, ip, user_agent, last_seen FROM client_ips WHERE user_id = $1
		ORDER BY last_seen DESC, device_id, ip, user_agent LIMIT 1000`, userID)
	return collect(rows, err, func(rows *sql.Rows) (storage.ClientIP, error) {
		var c storage.ClientIP
		return c, rows.Scan(&c.UserID, &c.DeviceID, &c.IP, &c.UserAgent, &c.LastSeen)
	})
}

func (r reader) OpenIDToken(ctx context.Context, tokenHash string, now int64) (string, error) {
	var userID string
	err := r.row(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2`, tokenHash, now).Scan(&userID)
	return userID, translate(err)
}

func (r reader) Reports(ctx context.Context, limit int) ([]storage.Report, error) {
	rows, err := r.query(ctx, `SELECT id, kind, reporter, room_id, event_id, target_user, reason, content, received_ts FROM reports
		ORDER BY id DESC LIMIT $1`, limit)
	return collect(rows, err, func(rows *sql.Rows) (storage.Report, error) {
		var rep storage.Report
		var content string
		err := rows.Scan(&rep.ID, &rep.Kind, &rep.Reporter, &rep.RoomID, &rep.EventID, &rep.TargetUser, &rep.Reason, &content, &rep.ReceivedTS)
		rep.Content = []byte(content)
		return rep, err
	})
}

func (t *txn) SetAdmin(ctx context.Context, userID string, admin bool) error {
	return mustAffect(t.exec(ctx, `UPDATE users SET admin = $1 WHERE user_id = $2`, admin, userID))
}

func (t *txn) PutClientIPs(ctx context.Context, ips []storage.ClientIP) error {
	for _, c := range ips {
		if _, err := t.exec(ctx, `INSERT INTO client_ips (user_id, device_id, ip, user_agent, last_seen) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, device_id, ip, user_agent) DO UPDATE SET last_seen = excluded.last_seen
			WHERE excluded.last_seen > client_ips.last_seen`, c.UserID, c.DeviceID, c.IP, c.UserAgent, c.LastSeen); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE user_id = $3 AND device_id = $4 AND last_seen_ts <= $1`,
			c.LastSeen, c.IP, c.UserID, c.DeviceID); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) PruneClientIPs(ctx context.Context, before int64) error {
	_, err := t.exec(ctx, `DELETE FROM client_ips WHERE last_seen < $1`, before)
	return err
}

func (t *txn) PutOpenIDToken(ctx context.Context, tokenHash, userID string, expiresTS, now int64) error {
	if _, err := t.exec(ctx, `DELETE FROM openid_tokens WHERE expires_ts <= $1`, now); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`, tokenHash, userID, expiresTS)
	return err
}

func (t *txn) PutReport(ctx context.Context, rep storage.Report) (int64, error) {
	id, err := t.bump(ctx, "report")
	if err != nil {
		return 0, err
	}
	content := string(rep.Content)
	if content == "" {
		content = "{}"
	}
	_, err = t.exec(ctx, `INSERT INTO reports (id, kind, reporter, room_id, event_id, target_user, reason, content, received_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, rep.Kind, rep.Reporter, rep.RoomID, rep.EventID, rep.TargetUser, rep.Reason, content, rep.ReceivedTS)
	return id, err
}
