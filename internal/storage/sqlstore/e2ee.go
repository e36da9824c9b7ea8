package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// inChunk bounds IN lists: SQLite allows 32766 parameters, PostgreSQL 65535.
const inChunk = 5000

// eachChunk calls fn with consecutive parts of ids of at most inChunk values.
func eachChunk(ids []string, fn func(part []string) error) error {
	for len(ids) > 0 {
		n := min(len(ids), inChunk)
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// --- reads ---

func (r reader) DeviceKeys(ctx context.Context, userIDs []string) ([]storage.DeviceKeys, error) {
	var out []storage.DeviceKeys
	err := eachChunk(userIDs, func(part []string) error {
		rows, err := r.query(ctx, `SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k
			JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
			WHERE k.user_id IN (`+inList(1, len(part))+`) ORDER BY k.user_id, k.device_id`, anys(part)...)
		keys, err := collect(rows, err, func(rows *sql.Rows) (storage.DeviceKeys, error) {
			var k storage.DeviceKeys
			var raw string
			var dn sql.NullString
			err := rows.Scan(&k.UserID, &k.DeviceID, &raw, &dn)
			k.KeyJSON, k.DisplayName = []byte(raw), nullPtr(dn)
			return k, err
		})
		out = append(out, keys...)
		return err
	})
	return out, err
}

func (r reader) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	rows, err := r.query(ctx, `SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, err
		}
		out[alg] = n
	}
	return out, rows.Err()
}

func (r reader) OneTimeKeysByID(ctx context.Context, userID, deviceID string, ids []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := eachChunk(ids, func(part []string) error {
		rows, err := r.query(ctx, `SELECT algorithm, key_id, key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2
			AND algorithm || ':' || key_id IN (`+inList(3, len(part))+`)`, append([]any{userID, deviceID}, anys(part)...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var alg, id, raw string
			if err := rows.Scan(&alg, &id, &raw); err != nil {
				return err
			}
			out[alg+":"+id] = []byte(raw)
		}
		return rows.Err()
	})
	return out, err
}

func (r reader) FallbackKeys(ctx context.Context, userID, deviceID string) ([]storage.FallbackKey, error) {
	rows, err := r.query(ctx, `SELECT algorithm, key_id, key_json, used FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 ORDER BY algorithm`, userID, deviceID)
	return collect(rows, err, func(rows *sql.Rows) (storage.FallbackKey, error) {
		var k storage.FallbackKey
		var id, raw string
		err := rows.Scan(&k.Algorithm, &id, &raw, &k.Used)
		k.ID, k.JSON = k.Algorithm+":"+id, []byte(raw)
		return k, err
	})
}

func (r reader) CrossSigningKeys(ctx context.Context, userIDs []string) ([]storage.CrossSigningKey, error) {
	var out []storage.CrossSigningKey
	err := eachChunk(userIDs, func(part []string) error {
		rows, err := r.query(ctx, `SELECT user_id, usage, key_id, key_json FROM e2e_cross_signing_keys WHERE user_id IN (`+inList(1, len(part))+`)`, anys(part)...)
		keys, err := collect(rows, err, func(rows *sql.Rows) (storage.CrossSigningKey, error) {
			var k storage.CrossSigningKey
			var raw string
			err := rows.Scan(&k.UserID, &k.Usage, &k.KeyID, &raw)
			k.KeyJSON = []byte(raw)
			return k, err
		})
		out = append(out, keys...)
		return err
	})
	return out, err
}

func (r reader) KeySignatures(ctx context.Context, targetUserIDs []string) ([]storage.KeySignature, error) {
	var out []storage.KeySignature
	err := eachChunk(targetUserIDs, func(part []string) error {
		rows, err := r.query(ctx, `SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures
			WHERE target_user_id IN (`+inList(1, len(part))+`) ORDER BY signer_user_id, signer_key_id`, anys(part)...)
		sigs, err := collect(rows, err, func(rows *sql.Rows) (storage.KeySignature, error) {
			var s storage.KeySignature
			return s, rows.Scan(&s.TargetUserID, &s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature)
		})
		out = append(out, sigs...)
		return err
	})
	return out, err
}

func (r reader) DeviceListChanges(ctx context.Context, from, to stream.Pos) ([]storage.DeviceListChange, error) {
	rows, err := r.query(ctx, `SELECT pos, user_id, only_for FROM device_list_changes WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)
	return collect(rows, err, func(rows *sql.Rows) (storage.DeviceListChange, error) {
		var c storage.DeviceListChange
		return c, rows.Scan(&c.Pos, &c.UserID, &c.OnlyFor)
	})
}

func (r reader) ToDeviceMessages(ctx context.Context, userID, deviceID string, after, upTo stream.Pos, limit int) ([]storage.ToDeviceMessage, error) {
	rows, err := r.query(ctx, `SELECT pos, user_id, device_id, sender, type, content FROM to_device
		WHERE user_id = $1 AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5`, userID, deviceID, after, upTo, limit)
	return collect(rows, err, func(rows *sql.Rows) (storage.ToDeviceMessage, error) {
		var m storage.ToDeviceMessage
		var content string
		err := rows.Scan(&m.Pos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &content)
		m.Content = []byte(content)
		return m, err
	})
}

func (r reader) ToDeviceHeads(ctx context.Context, userID string) (map[string]stream.Pos, error) {
	rows, err := r.query(ctx, `SELECT device_id, MAX(pos) FROM to_device WHERE user_id = $1 GROUP BY device_id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]stream.Pos{}
	for rows.Next() {
		var d string
		var p stream.Pos
		if err := rows.Scan(&d, &p); err != nil {
			return nil, err
		}
		out[d] = p
	}
	return out, rows.Err()
}

func (r reader) ToDeviceCounts(ctx context.Context, userID string, deviceIDs []string) (map[string]int, error) {
	out := map[string]int{}
	err := eachChunk(deviceIDs, func(part []string) error {
		rows, err := r.query(ctx, `SELECT device_id, COUNT(*) FROM to_device WHERE user_id = $1 AND device_id IN (`+inList(2, len(part))+`) GROUP BY device_id`,
			append([]any{userID}, anys(part)...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d string
			var n int
			if err := rows.Scan(&d, &n); err != nil {
				return err
			}
			out[d] = n
		}
		return rows.Err()
	})
	return out, err
}

const backupCols = `user_id, version, algorithm, auth_data, etag, deleted`

func (r reader) KeyBackup(ctx context.Context, userID string, version int64) (storage.KeyBackup, error) {
	var row *sql.Row
	if version == 0 {
		row = r.row(ctx, `SELECT `+backupCols+` FROM key_backups WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1`, userID)
	} else {
		row = r.row(ctx, `SELECT `+backupCols+` FROM key_backups WHERE user_id = $1 AND version = $2`, userID, version)
	}
	var b storage.KeyBackup
	var auth string
	err := row.Scan(&b.UserID, &b.Version, &b.Algorithm, &auth, &b.Etag, &b.Deleted)
	b.AuthData = []byte(auth)
	return b, translate(err)
}

func (r reader) KeyBackupVersions(ctx context.Context, userID string) (int, error) {
	var n int
	err := r.row(ctx, `SELECT COUNT(*) FROM key_backups WHERE user_id = $1 AND NOT deleted`, userID).Scan(&n)
	return n, translate(err)
}

// backupWhere selects a version's sessions: all, a room's, or one.
func backupWhere(userID string, version int64, roomID, sessionID string) (string, []any) {
	q, args := `user_id = $1 AND version = $2`, []any{userID, version}
	if roomID != "" {
		q, args = q+` AND room_id = $3`, append(args, roomID)
		if sessionID != "" {
			q, args = q+` AND session_id = $4`, append(args, sessionID)
		}
	}
	return q, args
}

func (r reader) BackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]storage.BackupSession, error) {
	where, args := backupWhere(userID, version, roomID, sessionID)
	rows, err := r.query(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM key_backup_sessions
		WHERE `+where+` ORDER BY room_id, session_id`, args...)
	return collect(rows, err, func(rows *sql.Rows) (storage.BackupSession, error) {
		var s storage.BackupSession
		var data string
		err := rows.Scan(&s.RoomID, &s.SessionID, &s.FirstMessageIndex, &s.ForwardedCount, &s.IsVerified, &data)
		s.SessionData = []byte(data)
		return s, err
	})
}

func (r reader) BackupCount(ctx context.Context, userID string, version int64) (int, error) {
	var n int
	err := r.row(ctx, `SELECT COUNT(*) FROM key_backup_sessions WHERE user_id = $1 AND version = $2`, userID, version).Scan(&n)
	return n, translate(err)
}

// --- writes ---

func (t *txn) PutDeviceKeys(ctx context.Context, userID, deviceID string, keyJSON []byte) error {
	_, err := t.exec(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, userID, deviceID, string(keyJSON))
	return err
}

func (t *txn) AddOneTimeKeys(ctx context.Context, userID, deviceID string, keys []storage.OneTimeKey) error {
	if len(keys) == 0 {
		return nil
	}
	// One sequence number per upload: keys of one upload are equivalent (the spec orders
	// claims only by upload).
	seq, err := t.bump(ctx, "one_time_keys")
	if err != nil {
		return err
	}
	for _, k := range keys {
		alg, id, _ := strings.Cut(k.ID, ":")
		if _, err := t.exec(ctx, `INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, seq) VALUES ($1, $2, $3, $4, $5, $6)`,
			userID, deviceID, alg, id, string(k.JSON), seq); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) ClaimOneTimeKey(ctx context.Context, userID, deviceID, algorithm string) (storage.OneTimeKey, error) {
	// PostgreSQL: a concurrent claim skips the key another transaction is taking instead of
	// waiting for it and then finding it gone. SQLite has one writer at a time.
	lock := ""
	if t.d == postgresDialect {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	for attempt := 0; attempt < 5; attempt++ {
		var id, raw string
		err := t.row(ctx, `DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = (
			SELECT key_id FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY seq, key_id LIMIT 1`+lock+`)
			RETURNING key_id, key_json`, userID, deviceID, algorithm).Scan(&id, &raw)
		if err == nil {
			return storage.OneTimeKey{ID: algorithm + ":" + id, JSON: []byte(raw)}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return storage.OneTimeKey{}, err
		}
		// The key picked may have gone to a claim that committed meanwhile: look again if
		// any are left.
		var n int
		if err := t.row(ctx, `SELECT COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`, userID, deviceID, algorithm).Scan(&n); err != nil {
			return storage.OneTimeKey{}, err
		}
		if n == 0 {
			break
		}
	}
	return storage.OneTimeKey{}, storage.ErrNotFound
}

func (t *txn) PutFallbackKey(ctx context.Context, userID, deviceID string, k storage.FallbackKey) error {
	_, id, _ := strings.Cut(k.ID, ":")
	// Uploading the same key again keeps whether it was used.
	_, err := t.exec(ctx, `INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, FALSE)
		ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json,
		used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id AND e2e_fallback_keys.key_json = excluded.key_json THEN e2e_fallback_keys.used ELSE FALSE END`,
		userID, deviceID, k.Algorithm, id, string(k.JSON))
	return err
}

func (t *txn) ClaimFallbackKey(ctx context.Context, userID, deviceID, algorithm string) (storage.OneTimeKey, error) {
	var id, raw string
	err := t.row(ctx, `UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json`,
		userID, deviceID, algorithm).Scan(&id, &raw)
	if err != nil {
		return storage.OneTimeKey{}, translate(err)
	}
	return storage.OneTimeKey{ID: algorithm + ":" + id, JSON: []byte(raw)}, nil
}

func (t *txn) DeleteDeviceE2EE(ctx context.Context, userID string, deviceIDs []string) error {
	return eachChunk(deviceIDs, func(part []string) error {
		in := inList(2, len(part))
		args := append([]any{userID}, anys(part)...)
		for _, q := range []string{
			`DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id IN (` + in + `)`,
			`DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id IN (` + in + `)`,
			`DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id IN (` + in + `)`,
			`DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id IN (` + in + `)`,
			`DELETE FROM to_device WHERE user_id = $1 AND device_id IN (` + in + `)`,
			`DELETE FROM to_device_txns WHERE user_id = $1 AND device_id IN (` + in + `)`,
		} {
			if _, err := t.exec(ctx, q, args...); err != nil {
				return err
			}
		}
		// Signatures the devices made (of the user's master key) go with them.
		keyIDs := make([]any, len(part))
		for i, d := range part {
			keyIDs[i] = "ed25519:" + d
		}
		_, err := t.exec(ctx, `DELETE FROM e2e_signatures WHERE signer_user_id = $1 AND target_user_id = $1 AND signer_key_id IN (`+in+`)`,
			append([]any{userID}, keyIDs...)...)
		return err
	})
}

func (t *txn) PutCrossSigningKey(ctx context.Context, k storage.CrossSigningKey) error {
	_, err := t.exec(ctx, `INSERT INTO e2e_cross_signing_keys (user_id, usage, key_id, key_json) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, usage) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json`, k.UserID, k.Usage, k.KeyID, string(k.KeyJSON))
	return err
}

func (t *txn) PutKeySignatures(ctx context.Context, sigs []storage.KeySignature) error {
	for _, s := range sigs {
		if _, err := t.exec(ctx, `INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
			s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) DeleteKeySignatures(ctx context.Context, targetUserID, targetKeyID string) error {
	_, err := t.exec(ctx, `DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2`, targetUserID, targetKeyID)
	return err
}

func (t *txn) LockKeyBackup(ctx context.Context, userID string) (storage.KeyBackup, error) {
	lock := ""
	if t.d == postgresDialect {
		lock = " FOR UPDATE"
	}
	var b storage.KeyBackup
	var auth string
	err := t.row(ctx, `SELECT `+backupCols+` FROM key_backups WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1`+lock, userID).
		Scan(&b.UserID, &b.Version, &b.Algorithm, &auth, &b.Etag, &b.Deleted)
	b.AuthData = []byte(auth)
	return b, translate(err)
}

func (t *txn) PutDeviceListChange(ctx context.Context, c storage.DeviceListChange) error {
	_, err := t.exec(ctx, `INSERT INTO device_list_changes (user_id, only_for, pos) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, only_for) DO UPDATE SET pos = excluded.pos`, c.UserID, c.OnlyFor, c.Pos)
	return err
}

func (t *txn) PutToDevice(ctx context.Context, msgs []storage.ToDeviceMessage) error {
	// Many rows per statement: a room key goes to every device of a room at once.
	const perStmt = 100
	for len(msgs) > 0 {
		n := min(len(msgs), perStmt)
		var b strings.Builder
		args := make([]any, 0, 6*n)
		b.WriteString(`INSERT INTO to_device (user_id, device_id, pos, sender, type, content) VALUES `)
		for i, m := range msgs[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(" + inList(6*i+1, 6) + ")")
			args = append(args, m.UserID, m.DeviceID, m.Pos, m.Sender, m.Type, string(m.Content))
		}
		if _, err := t.exec(ctx, b.String(), args...); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// toDeviceTxnLife is how long a to-device transaction ID is remembered.
const toDeviceTxnLife = 24 * time.Hour

func (t *txn) PutToDeviceTxn(ctx context.Context, userID, deviceID, txnID string) error {
	now := time.Now()
	if _, err := t.exec(ctx, `DELETE FROM to_device_txns WHERE created_ts < $1`, now.Add(-toDeviceTxnLife).UnixMilli()); err != nil {
		return err
	}
	// ON CONFLICT rather than a failing insert: a failed statement would abort a
	// PostgreSQL transaction.
	res, err := t.exec(ctx, `INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, userID, deviceID, txnID, now.UnixMilli())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return storage.ErrConflict
	}
	return nil
}

func (t *txn) DeleteToDevice(ctx context.Context, userID, deviceID string, upTo stream.Pos) error {
	_, err := t.exec(ctx, `DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos <= $3`, userID, deviceID, upTo)
	return err
}

func (t *txn) CreateKeyBackup(ctx context.Context, userID, algorithm string, authData []byte) (int64, error) {
	var v int64
	err := t.row(ctx, `INSERT INTO key_backups (user_id, version, algorithm, auth_data, etag, deleted)
		SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0, FALSE FROM key_backups WHERE user_id = $1 RETURNING version`,
		userID, algorithm, string(authData)).Scan(&v)
	return v, translate(err)
}

func (t *txn) UpdateKeyBackup(ctx context.Context, userID string, version int64, authData []byte) error {
	return mustAffect(t.exec(ctx, `UPDATE key_backups SET auth_data = $1 WHERE user_id = $2 AND version = $3 AND NOT deleted`, string(authData), userID, version))
}

func (t *txn) DeleteKeyBackup(ctx context.Context, userID string, version int64) error {
	if _, err := t.exec(ctx, `DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return err
	}
	return mustAffect(t.exec(ctx, `UPDATE key_backups SET deleted = TRUE, auth_data = '{}' WHERE user_id = $1 AND version = $2`, userID, version))
}

func (t *txn) PutBackupSessions(ctx context.Context, userID string, version int64, sessions []storage.BackupSession) error {
	for _, s := range sessions {
		if _, err := t.exec(ctx, `INSERT INTO key_backup_sessions (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
			forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
			userID, version, s.RoomID, s.SessionID, s.FirstMessageIndex, s.ForwardedCount, s.IsVerified, string(s.SessionData)); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) DeleteBackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) (int64, error) {
	where, args := backupWhere(userID, version, roomID, sessionID)
	res, err := t.exec(ctx, `DELETE FROM key_backup_sessions WHERE `+where, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *txn) BumpBackupEtag(ctx context.Context, userID string, version int64) (int64, error) {
	var etag int64
	err := t.row(ctx, `UPDATE key_backups SET etag = etag + 1 WHERE user_id = $1 AND version = $2 RETURNING etag`, userID, version).Scan(&etag)
	return etag, translate(err)
}

// streamRangeE2EE adds the E2EE items of (from, to] to a stream batch.
func (r reader) streamRangeE2EE(ctx context.Context, b *storage.StreamBatch, from, to stream.Pos) error {
	var err error
	if b.DeviceLists, err = r.DeviceListChanges(ctx, from, to); err != nil {
		return err
	}
	rows, err := r.query(ctx, `SELECT pos, user_id, device_id FROM to_device WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)
	b.ToDevice, err = collect(rows, err, func(rows *sql.Rows) (storage.ToDeviceMessage, error) {
		var m storage.ToDeviceMessage
		return m, rows.Scan(&m.Pos, &m.UserID, &m.DeviceID)
	})
	return err
}
