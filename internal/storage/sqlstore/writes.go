package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// txn implements storage.Tx.
type txn struct {
	reader
	channelSuffix string
	afterCommit   []func()
}

func (t *txn) AfterCommit(fn func()) { t.afterCommit = append(t.afterCommit, fn) }

var _ storage.Tx = (*txn)(nil)

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullBytes(b []byte) sql.NullString { return sql.NullString{String: string(b), Valid: b != nil} }

func (t *txn) bump(ctx context.Context, counter string) (int64, error) {
	var v int64
	err := t.row(ctx, `UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value`, counter).Scan(&v)
	return v, translate(err)
}

func (t *txn) LockStream(ctx context.Context) error {
	// A no-op update takes PostgreSQL's row lock until commit; SQLite's single writer
	// connection already serialises writers.
	if t.d == sqliteDialect {
		return nil
	}
	_, err := t.exec(ctx, `UPDATE counters SET value = value WHERE name = 'stream'`)
	return err
}

func (t *txn) Notify(ctx context.Context, channel, payload string) error {
	if t.d != postgresDialect {
		return nil
	}
	_, err := t.exec(ctx, `SELECT pg_notify($1, $2)`, channel+t.channelSuffix, payload)
	return err
}

func (t *txn) NextPos(ctx context.Context) (stream.Pos, error) {
	v, err := t.bump(ctx, "stream")
	return stream.Pos(v), err
}

func (t *txn) NextGuestNumber(ctx context.Context) (int64, error) { return t.bump(ctx, "guest") }

// mustAffect turns "no row changed" into ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

func (t *txn) CreateUser(ctx context.Context, u storage.User) error {
	if _, err := t.exec(ctx, `INSERT INTO users (user_id, password_hash, is_guest, deactivated, displayname, avatar_url, created_ts, admin) VALUES ($1, $2, $3, FALSE, $4, $5, $6, $7)`,
		u.ID, u.PasswordHash, u.IsGuest, ptrNull(u.DisplayName), ptrNull(u.AvatarURL), u.CreatedTS, u.Admin); err != nil {
		return err
	}
	return t.putDirectoryEntry(ctx, u.ID, u.DisplayName, u.AvatarURL)
}

func (t *txn) UpdatePassword(ctx context.Context, userID, hash string) error {
	return mustAffect(t.exec(ctx, `UPDATE users SET password_hash = $1 WHERE user_id = $2`, hash, userID))
}

func (t *txn) UpgradeGuest(ctx context.Context, userID, passwordHash string) error {
	return mustAffect(t.exec(ctx, `UPDATE users SET password_hash = $1, is_guest = FALSE WHERE user_id = $2 AND is_guest`, passwordHash, userID))
}

func (t *txn) SetProfile(ctx context.Context, userID string, displayName, avatarURL *string) error {
	if err := mustAffect(t.exec(ctx, `UPDATE users SET displayname = $1, avatar_url = $2 WHERE user_id = $3`, ptrNull(displayName), ptrNull(avatarURL), userID)); err != nil {
		return err
	}
	return t.putDirectoryEntry(ctx, userID, displayName, avatarURL)
}

func (t *txn) Deactivate(ctx context.Context, userID string) error {
	if err := mustAffect(t.exec(ctx, `UPDATE users SET deactivated = TRUE, password_hash = '' WHERE user_id = $1`, userID)); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM access_tokens WHERE user_id = $1`, userID); err != nil {
		return err
	}
	// Deactivated users cannot be contacted: they leave the directory.
	return t.deleteDirectoryEntry(ctx, userID)
}

func (t *txn) CreateDevice(ctx context.Context, d storage.Device) error {
	_, err := t.exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, devices.display_name)`,
		d.UserID, d.ID, ptrNull(d.DisplayName), d.LastSeenTS, d.LastSeenIP, d.CreatedTS)
	return err
}

func (t *txn) UpdateDevice(ctx context.Context, userID, deviceID string, displayName *string) error {
	return mustAffect(t.exec(ctx, `UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3`, ptrNull(displayName), userID, deviceID))
}

func (t *txn) DeleteDevices(ctx context.Context, userID string, deviceIDs []string, keep string) ([]string, error) {
	scanID := func(rows *sql.Rows) (string, error) { var s string; return s, rows.Scan(&s) }
	var deleted []string
	var err error
	if deviceIDs == nil {
		rows, qerr := t.query(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id <> $2 RETURNING device_id`, userID, keep)
		deleted, err = collect(rows, qerr, scanID)
	} else {
		deleted, err = queryIn(t.reader, ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id IN (%s) RETURNING device_id`, []any{userID}, deviceIDs, scanID)
	}
	if err != nil {
		return nil, err
	}
	for _, d := range deleted {
		if _, err := t.exec(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, userID, d); err != nil {
			return nil, err
		}
		// A pusher goes with the device that made it (as in Synapse).
		if _, err := t.exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`, userID, d); err != nil {
			return nil, err
		}
		if _, err := t.exec(ctx, `DELETE FROM client_ips WHERE user_id = $1 AND device_id = $2`, userID, d); err != nil {
			return nil, err
		}
	}
	return deleted, nil
}

func (t *txn) CreateToken(ctx context.Context, tokenHash, userID, deviceID string) error {
	_, err := t.exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)`, tokenHash, userID, deviceID, time.Now().UnixMilli())
	return err
}

func (t *txn) DeleteToken(ctx context.Context, tokenHash string) error {
	return mustAffect(t.exec(ctx, `DELETE FROM access_tokens WHERE token_hash = $1`, tokenHash))
}

func (t *txn) PutUIASession(ctx context.Context, sessionID string, s storage.UIASession) error {
	if s.Completed == nil {
		s.Completed = []string{}
	}
	raw, _ := json.Marshal(s)
	// Sessions live a day; anyone can start one, so they must not pile up.
	if _, err := t.exec(ctx, `DELETE FROM uia_sessions WHERE created_ts < $1`, time.Now().Add(-24*time.Hour).UnixMilli()); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO uia_sessions (session_id, completed, created_ts, user_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (session_id) DO UPDATE SET completed = excluded.completed, user_id = excluded.user_id`, sessionID, string(raw), time.Now().UnixMilli(), nullStr(s.UserID))
	return err
}

func (t *txn) DeleteUserUIASessions(ctx context.Context, userID string) error {
	_, err := t.exec(ctx, `DELETE FROM uia_sessions WHERE user_id = $1`, userID)
	return err
}

func (t *txn) DeleteUIASession(ctx context.Context, sessionID string) error {
	_, err := t.exec(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, sessionID)
	return err
}

func (t *txn) PutFilter(ctx context.Context, userID string, filter []byte) (int64, error) {
	var id int64
	if err := t.row(ctx, `SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = $1`, userID).Scan(&id); err != nil {
		return 0, translate(err)
	}
	_, err := t.exec(ctx, `INSERT INTO filters (user_id, filter_id, filter) VALUES ($1, $2, $3)`, userID, id, string(filter))
	return id, err
}

func (t *txn) CreateRoom(ctx context.Context, r storage.Room) error {
	_, err := t.exec(ctx, `INSERT INTO rooms (room_id, room_version, creator, published, head_event_id, extremities, depth, created_pos) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.ID, r.Version, r.Creator, r.Published, r.HeadEventID, extremitiesJSON(r.Extremities), r.Depth, r.CreatedPos)
	return err
}

func extremitiesJSON(ids []string) string {
	if ids == nil {
		ids = []string{}
	}
	raw, _ := json.Marshal(ids)
	return string(raw)
}

func (t *txn) SetRoomHead(ctx context.Context, roomID, headEventID string, extremities []string, depth int64) error {
	return mustAffect(t.exec(ctx, `UPDATE rooms SET head_event_id = $1, extremities = $2, depth = $3 WHERE room_id = $4`,
		headEventID, extremitiesJSON(extremities), depth, roomID))
}

func (t *txn) SetPublished(ctx context.Context, roomID string, published bool) error {
	return mustAffect(t.exec(ctx, `UPDATE rooms SET published = $1 WHERE room_id = $2`, published, roomID))
}

func (t *txn) SetAppServiceListed(ctx context.Context, appServiceID, networkID, roomID string, listed bool) error {
	if !listed {
		_, err := t.exec(ctx, `DELETE FROM appservice_room_list WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3`, appServiceID, networkID, roomID)
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO appservice_room_list (appservice_id, network_id, room_id) VALUES ($1, $2, $3)
		ON CONFLICT (appservice_id, network_id, room_id) DO NOTHING`, appServiceID, networkID, roomID)
	return err
}

func (t *txn) InsertEvent(ctx context.Context, e *storage.Event) error {
	var group sql.NullInt64
	if e.StateGroup != 0 {
		group = sql.NullInt64{Int64: e.StateGroup, Valid: true}
	}
	_, err := t.exec(ctx, `INSERT INTO events (`+eventCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		e.Pos, e.ID, e.RoomID, e.Type, ptrNull(e.StateKey), e.Sender, e.Depth, e.OriginTS, string(e.PDU), nullBytes(e.Unsigned),
		e.Visibility, nullStr(e.Membership), nullStr(e.PrevMembership), nullStr(e.TxnID), nullStr(e.TxnDevice), nullBytes(e.RedactedBecause),
		group, nullStr(e.Outlier), nullStr(e.OutlierReason))
	if err != nil {
		return err
	}
	if err := t.indexForSearch(ctx, e); err != nil {
		return err
	}
	return t.indexRemoteMember(ctx, e)
}

func (t *txn) SetCurrentState(ctx context.Context, roomID, evType, stateKey, eventID string, pos stream.Pos) error {
	var err error
	if eventID == "" {
		_, err = t.exec(ctx, `DELETE FROM room_state WHERE room_id = $1 AND type = $2 AND state_key = $3`, roomID, evType, stateKey)
	} else {
		_, err = t.exec(ctx, `INSERT INTO room_state (room_id, type, state_key, event_id, pos) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos`, roomID, evType, stateKey, eventID, pos)
	}
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO state_deltas (room_id, type, state_key, pos, event_id) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (room_id, type, state_key, pos) DO UPDATE SET event_id = excluded.event_id`, roomID, evType, stateKey, pos, nullStr(eventID))
	return err
}

func (t *txn) NewStateGroup(ctx context.Context, g storage.StateGroup) (int64, error) {
	id, err := t.bump(ctx, "state_group")
	if err != nil {
		return 0, err
	}
	if _, err := t.exec(ctx, `INSERT INTO state_groups (group_id, room_id, base_pos) VALUES ($1, $2, $3)`, id, g.RoomID, g.BasePos); err != nil {
		return 0, err
	}
	for k, ev := range g.Entries {
		if _, err := t.exec(ctx, `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES ($1, $2, $3, $4)`,
			id, k.Type, k.StateKey, nullStr(ev)); err != nil {
			return 0, err
		}
	}
	return id, nil
}

func (t *txn) DeleteOutlier(ctx context.Context, eventID string) error {
	return mustAffect(t.exec(ctx, `DELETE FROM events WHERE event_id = $1 AND outlier = 'outlier'`, eventID))
}

func (t *txn) NextOutlierPos(ctx context.Context) (stream.Pos, error) {
	v, err := t.bump(ctx, "outlier")
	return stream.Pos(v), err
}

func (t *txn) SetMember(ctx context.Context, m storage.Member) error {
	joinedPos := stream.Pos(0)
	if m.Membership == "join" {
		joinedPos = m.Pos
	}
	// joined_pos survives join → join (a profile change) and ends with the membership.
	_, err := t.exec(ctx, `INSERT INTO room_members (room_id, user_id, membership, event_id, pos, forgotten, joined_pos) VALUES ($1, $2, $3, $4, $5, FALSE, $6)
		ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = FALSE,
		joined_pos = CASE WHEN excluded.membership <> 'join' THEN 0 WHEN room_members.membership = 'join' THEN room_members.joined_pos ELSE excluded.joined_pos END`,
		m.RoomID, m.UserID, m.Membership, m.EventID, m.Pos, joinedPos)
	return err
}

func (t *txn) SetForgotten(ctx context.Context, roomID, userID string) error {
	return mustAffect(t.exec(ctx, `UPDATE room_members SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2`, roomID, userID))
}

func (t *txn) PutTxn(ctx context.Context, userID, deviceID, roomID, txnID, eventID string) error {
	_, err := t.exec(ctx, `INSERT INTO txn_ids (user_id, device_id, room_id, txn_id, event_id, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		userID, deviceID, roomID, txnID, eventID, time.Now().UnixMilli())
	return err
}

func (t *txn) Redact(ctx context.Context, eventID string, prunedPDU, redactedBecause []byte) error {
	if err := mustAffect(t.exec(ctx, `UPDATE events SET pdu = $1, redacted_because = $2 WHERE event_id = $3`, string(prunedPDU), string(redactedBecause), eventID)); err != nil {
		return err
	}
	return t.unindex(ctx, eventID)
}

func (t *txn) SetUnsigned(ctx context.Context, eventID string, unsigned []byte) error {
	return mustAffect(t.exec(ctx, `UPDATE events SET unsigned = $1 WHERE event_id = $2`, nullBytes(unsigned), eventID))
}

func (t *txn) PutAlias(ctx context.Context, a storage.Alias) error {
	_, err := t.exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)`, a.Alias, a.RoomID, a.Creator)
	return err
}

func (t *txn) DeleteAlias(ctx context.Context, alias string) error {
	return mustAffect(t.exec(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias))
}

func (t *txn) PutReceipt(ctx context.Context, r storage.Receipt) error {
	_, err := t.exec(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, pos) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, pos = excluded.pos`,
		r.RoomID, r.Type, r.UserID, r.ThreadID, r.EventID, r.EventPos, r.TS, r.Pos)
	return err
}

func (t *txn) PutTyping(ctx context.Context, ty storage.Typing) error {
	ids := ty.UserIDs
	if ids == nil {
		ids = []string{}
	}
	raw, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("encoding typing: %w", err)
	}
	_, err = t.exec(ctx, `INSERT INTO typing (room_id, user_ids, pos) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO UPDATE SET user_ids = excluded.user_ids, pos = excluded.pos`, ty.RoomID, string(raw), ty.Pos)
	return err
}

func (t *txn) PutPresence(ctx context.Context, p storage.Presence) error {
	_, err := t.exec(ctx, `INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active, pos) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,
		currently_active = excluded.currently_active, pos = excluded.pos`,
		p.UserID, p.State, ptrNull(p.StatusMsg), p.LastActiveTS, p.CurrentlyActive, p.Pos)
	return err
}

func (t *txn) PutAccountData(ctx context.Context, a storage.AccountData) error {
	_, err := t.exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
		a.UserID, a.RoomID, a.Type, string(a.Content), a.Pos)
	return err
}
