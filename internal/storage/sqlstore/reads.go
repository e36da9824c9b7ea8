package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// reader implements storage.Reader and storage.Accounts on a pool or a transaction.
type reader struct {
	q querier
	d dialect
}

func (r reader) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return r.q.QueryContext(ctx, r.d.rebind(q), args...)
}

func (r reader) row(ctx context.Context, q string, args ...any) *sql.Row {
	return r.q.QueryRowContext(ctx, r.d.rebind(q), args...)
}

func (r reader) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	res, err := r.q.ExecContext(ctx, r.d.rebind(q), args...)
	return res, translate(err)
}

// collect scans every row with scan.
func collect[T any](rows *sql.Rows, err error, scan func(*sql.Rows) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// inList renders "$start, $start+1, ..." for n values.
func inList(start, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(itoa(start + i))
	}
	return b.String()
}

// maxInList is the most values one IN list carries; longer lists are split over several
// queries (SQLite allows 32,766 parameters in a statement, PostgreSQL 65,535).
const maxInList = 512

// inChunks splits vals into IN-list chunks of at most maxInList values, each padded to a
// power of two by repeating its last value (IN ignores repeats), so that a query has a
// handful of distinct shapes for the statement caches rather than one per length.
func inChunks(vals []string) [][]any {
	var out [][]any
	for len(vals) > 0 {
		n := min(len(vals), maxInList)
		size := 1
		for size < n {
			size *= 2
		}
		chunk := make([]any, size)
		for i := range chunk {
			chunk[i] = vals[min(i, n-1)]
		}
		out = append(out, chunk)
		vals = vals[n:]
	}
	return out
}

// queryIn runs a query whose IN list (written as IN (%s) after the fixed arguments) holds
// vals, chunk by chunk, and collects every row; callers sort the result if they need to.
func queryIn[T any](r reader, ctx context.Context, query string, fixed []any, vals []string, scan func(*sql.Rows) (T, error)) ([]T, error) {
	var out []T
	for _, chunk := range inChunks(vals) {
		q := strings.Replace(query, "%s", inList(len(fixed)+1, len(chunk)), 1)
		rows, err := r.query(ctx, q, append(slices.Clone(fixed), chunk...)...)
		got, err := collect(rows, err, scan)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func anys[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// --- accounts ---

func (r reader) User(ctx context.Context, userID string) (storage.User, error) {
	var u storage.User
	var dn, av sql.NullString
	err := r.row(ctx, `SELECT user_id, password_hash, is_guest, deactivated, displayname, avatar_url, created_ts, admin FROM users WHERE user_id = $1`, userID).
		Scan(&u.ID, &u.PasswordHash, &u.IsGuest, &u.Deactivated, &dn, &av, &u.CreatedTS, &u.Admin)
	u.DisplayName, u.AvatarURL = nullPtr(dn), nullPtr(av)
	return u, translate(err)
}

func (r reader) TokenOwner(ctx context.Context, tokenHash string) (storage.TokenOwner, error) {
	var o storage.TokenOwner
	err := r.row(ctx, `SELECT t.user_id, t.device_id, u.is_guest FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1 AND NOT u.deactivated`, tokenHash).
		Scan(&o.UserID, &o.DeviceID, &o.IsGuest)
	return o, translate(err)
}

func scanDevice(rows interface{ Scan(...any) error }) (storage.Device, error) {
	var d storage.Device
	var dn sql.NullString
	err := rows.Scan(&d.UserID, &d.ID, &dn, &d.LastSeenTS, &d.LastSeenIP, &d.CreatedTS)
	d.DisplayName = nullPtr(dn)
	return d, err
}

const deviceCols = `user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts`

func (r reader) Devices(ctx context.Context, userID string) ([]storage.Device, error) {
	rows, err := r.query(ctx, `SELECT `+deviceCols+` FROM devices WHERE user_id = $1 ORDER BY device_id`, userID)
	return collect(rows, err, func(rows *sql.Rows) (storage.Device, error) { return scanDevice(rows) })
}

func (r reader) Device(ctx context.Context, userID, deviceID string) (storage.Device, error) {
	d, err := scanDevice(r.row(ctx, `SELECT `+deviceCols+` FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID))
	return d, translate(err)
}

func (r reader) UIASession(ctx context.Context, sessionID string) (storage.UIASession, error) {
	var s storage.UIASession
	var raw string
	var user sql.NullString
	if err := r.row(ctx, `SELECT completed, user_id FROM uia_sessions WHERE session_id = $1`, sessionID).Scan(&raw, &user); err != nil {
		return s, translate(err)
	}
	// The completed column holds the whole session as JSON.
	err := json.Unmarshal([]byte(raw), &s)
	s.UserID = user.String
	return s, err
}

func (r reader) Filter(ctx context.Context, userID string, filterID int64) ([]byte, error) {
	var raw string
	err := r.row(ctx, `SELECT filter FROM filters WHERE user_id = $1 AND filter_id = $2`, userID, filterID).Scan(&raw)
	return []byte(raw), translate(err)
}

// --- rooms and events ---

func (r reader) Room(ctx context.Context, roomID string) (storage.Room, error) {
	var rm storage.Room
	var extremities string
	err := r.row(ctx, `SELECT room_id, room_version, creator, published, head_event_id, extremities, depth, created_pos FROM rooms WHERE room_id = $1`, roomID).
		Scan(&rm.ID, &rm.Version, &rm.Creator, &rm.Published, &rm.HeadEventID, &extremities, &rm.Depth, &rm.CreatedPos)
	if err != nil {
		return rm, translate(err)
	}
	if err := json.Unmarshal([]byte(extremities), &rm.Extremities); err != nil {
		return rm, fmt.Errorf("room %s: bad extremities: %w", roomID, err)
	}
	return rm, nil
}

const eventCols = `pos, event_id, room_id, type, state_key, sender, depth, origin_ts, pdu, unsigned, visibility, membership, prev_membership, txn_id, txn_device, redacted_because, state_group, outlier, outlier_reason`

// inTimeline is the condition that leaves out events kept aside (outliers, soft-failed
// and rejected events), for every read of a room's timeline.
const inTimeline = `outlier IS NULL`

// eventColsE is eventCols qualified with the alias e.
var eventColsE = "e." + strings.ReplaceAll(eventCols, ", ", ", e.")

func scanEvent(rows interface{ Scan(...any) error }) (storage.Event, error) {
	return scanEventWith(rows)
}

// scanEventWith scans the columns before eventCols into before, then the event.
func scanEventWith(rows interface{ Scan(...any) error }, before ...any) (storage.Event, error) {
	var e storage.Event
	var sk, unsigned, memb, prevMemb, txn, txnDev, redacted, outlier, reason sql.NullString
	var group sql.NullInt64
	var pdu string
	err := rows.Scan(append(before, &e.Pos, &e.ID, &e.RoomID, &e.Type, &sk, &e.Sender, &e.Depth, &e.OriginTS, &pdu, &unsigned,
		&e.Visibility, &memb, &prevMemb, &txn, &txnDev, &redacted, &group, &outlier, &reason)...)
	if err != nil {
		return e, err
	}
	e.StateGroup, e.Outlier, e.OutlierReason = group.Int64, outlier.String, reason.String
	e.StateKey = nullPtr(sk)
	e.PDU = []byte(pdu)
	if unsigned.Valid {
		e.Unsigned = []byte(unsigned.String)
	}
	e.Membership, e.PrevMembership = memb.String, prevMemb.String
	e.TxnID, e.TxnDevice = txn.String, txnDev.String
	if redacted.Valid {
		e.RedactedBecause = []byte(redacted.String)
	}
	return e, nil
}

func scanEvents(rows *sql.Rows, err error) ([]storage.Event, error) {
	return collect(rows, err, func(rows *sql.Rows) (storage.Event, error) { return scanEvent(rows) })
}

func (r reader) EventByID(ctx context.Context, eventID string) (storage.Event, error) {
	e, err := scanEvent(r.row(ctx, `SELECT `+eventCols+` FROM events WHERE event_id = $1`, eventID))
	return e, translate(err)
}

func (r reader) EventsByIDs(ctx context.Context, ids []string) ([]storage.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	evs, err := queryIn(r, ctx, `SELECT `+eventCols+` FROM events WHERE event_id IN (%s)`, nil, ids,
		func(rows *sql.Rows) (storage.Event, error) { return scanEvent(rows) })
	slices.SortFunc(evs, func(a, b storage.Event) int { return cmp.Compare(a.Pos, b.Pos) })
	return evs, err
}

func (r reader) RoomEvents(ctx context.Context, roomID string, from, to stream.Pos, forward bool, limit int) ([]storage.Event, error) {
	if forward {
		return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3 AND `+inTimeline+` ORDER BY pos ASC LIMIT $4`, roomID, from, to, limit))
	}
	return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE room_id = $1 AND pos <= $2 AND pos > $3 AND `+inTimeline+` ORDER BY pos DESC LIMIT $4`, roomID, from, to, limit))
}

// keyedUnion renders one point query per state key, joined with UNION ALL: query holds
// "$T" and "$K" where each key's type and state_key go (arguments numbered from start).
// An OR of several keys makes SQLite's planner scan the whole room's state instead.
func keyedUnion(query string, start int, keys []storage.StateKeyOf) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		q := strings.ReplaceAll(query, "$T", "$"+itoa(start+2*i))
		b.WriteString(strings.ReplaceAll(q, "$K", "$"+itoa(start+2*i+1)))
		args = append(args, k.Type, k.StateKey)
	}
	return b.String(), args
}

func (r reader) CurrentState(ctx context.Context, roomID string, keys ...storage.StateKeyOf) ([]storage.Event, error) {
	if len(keys) == 0 {
		return scanEvents(r.query(ctx, `SELECT `+eventColsE+` FROM room_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 ORDER BY e.pos`, roomID))
	}
	ids, args := keyedUnion(`SELECT event_id FROM room_state WHERE room_id = $1 AND type = $T AND state_key = $K`, 2, keys)
	return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE event_id IN (`+ids+`) ORDER BY pos`,
		append([]any{roomID}, args...)...))
}

func (r reader) CurrentStateOfType(ctx context.Context, roomID, evType string, limit int) ([]storage.Event, error) {
	return scanEvents(r.query(ctx, `SELECT `+eventColsE+` FROM room_state s JOIN events e ON e.event_id = s.event_id
		WHERE s.room_id = $1 AND s.type = $2 ORDER BY s.state_key LIMIT $3`, roomID, evType, limit))
}

func (r reader) EventsByTime(ctx context.Context, roomID string, ts int64, pos stream.Pos, forward bool, limit int) ([]storage.Event, error) {
	if forward {
		return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE room_id = $1 AND (origin_ts, pos) > ($2, $3) AND `+inTimeline+`
			ORDER BY origin_ts ASC, pos ASC LIMIT $4`, roomID, ts, pos, limit))
	}
	return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE room_id = $1 AND (origin_ts, pos) < ($2, $3) AND `+inTimeline+`
		ORDER BY origin_ts DESC, pos DESC LIMIT $4`, roomID, ts, pos, limit))
}

// latestDeltas selects, per key, the event of the room's last state delta in the range
// (event IDs; keys whose last delta removed them give none).
const latestDeltas = `SELECT d.event_id FROM state_deltas d JOIN (
	SELECT type, state_key, MAX(pos) AS pos FROM state_deltas WHERE room_id = $1 AND pos > $2 AND pos <= $3 GROUP BY type, state_key
) l ON d.type = l.type AND d.state_key = l.state_key AND d.pos = l.pos
WHERE d.room_id = $1 AND d.event_id IS NOT NULL`

func (r reader) StateAt(ctx context.Context, roomID string, pos stream.Pos, keys ...storage.StateKeyOf) ([]storage.Event, error) {
	if len(keys) == 0 {
		return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE event_id IN (`+latestDeltas+`) ORDER BY pos`,
			roomID, stream.Pos(math.MinInt64), pos))
	}
	ids, args := keyedUnion(`SELECT event_id FROM state_deltas WHERE room_id = $1 AND type = $T AND state_key = $K AND pos =
		(SELECT MAX(pos) FROM state_deltas WHERE room_id = $1 AND type = $T AND state_key = $K AND pos <= $2)`, 3, keys)
	return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE event_id IN (`+ids+`) ORDER BY pos`,
		append([]any{roomID, pos}, args...)...))
}

func (r reader) StateChanges(ctx context.Context, roomID string, from, to stream.Pos) ([]storage.Event, error) {
	return scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE event_id IN (`+latestDeltas+`) ORDER BY pos`, roomID, from, to))
}

func (r reader) StateGroup(ctx context.Context, groupID int64) (storage.StateGroup, error) {
	g := storage.StateGroup{ID: groupID, Entries: map[storage.StateKeyOf]string{}}
	if err := r.row(ctx, `SELECT room_id, base_pos FROM state_groups WHERE group_id = $1`, groupID).Scan(&g.RoomID, &g.BasePos); err != nil {
		return g, translate(err)
	}
	rows, err := r.query(ctx, `SELECT type, state_key, event_id FROM state_group_entries WHERE group_id = $1`, groupID)
	if err != nil {
		return g, err
	}
	defer rows.Close()
	for rows.Next() {
		var k storage.StateKeyOf
		var ev sql.NullString
		if err := rows.Scan(&k.Type, &k.StateKey, &ev); err != nil {
			return g, err
		}
		g.Entries[k] = ev.String
	}
	return g, rows.Err()
}

func scanStateIDs(rows *sql.Rows, err error) (map[storage.StateKeyOf]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[storage.StateKeyOf]string{}
	for rows.Next() {
		var k storage.StateKeyOf
		var ev string
		if err := rows.Scan(&k.Type, &k.StateKey, &ev); err != nil {
			return nil, err
		}
		out[k] = ev
	}
	return out, rows.Err()
}

func (r reader) StateIDsAt(ctx context.Context, roomID string, pos stream.Pos) (map[storage.StateKeyOf]string, error) {
	return scanStateIDs(r.query(ctx, `SELECT d.type, d.state_key, d.event_id FROM state_deltas d JOIN (
		SELECT type, state_key, MAX(pos) AS pos FROM state_deltas WHERE room_id = $1 AND pos <= $2 GROUP BY type, state_key
	) l ON d.type = l.type AND d.state_key = l.state_key AND d.pos = l.pos
	WHERE d.room_id = $1 AND d.event_id IS NOT NULL`, roomID, pos))
}

func (r reader) CurrentStateIDs(ctx context.Context, roomID string) (map[storage.StateKeyOf]string, error) {
	return scanStateIDs(r.query(ctx, `SELECT type, state_key, event_id FROM room_state WHERE room_id = $1`, roomID))
}

const memberCols = `room_id, user_id, membership, event_id, pos, forgotten, joined_pos`

func scanMember(rows interface{ Scan(...any) error }) (storage.Member, error) {
	var m storage.Member
	err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos, &m.Forgotten, &m.JoinedPos)
	return m, err
}

func scanMembers(rows *sql.Rows, err error) ([]storage.Member, error) {
	return collect(rows, err, func(rows *sql.Rows) (storage.Member, error) { return scanMember(rows) })
}

func (r reader) Member(ctx context.Context, roomID, userID string) (storage.Member, error) {
	m, err := scanMember(r.row(ctx, `SELECT `+memberCols+` FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, userID))
	return m, translate(err)
}

func (r reader) MembershipsOf(ctx context.Context, userID string) ([]storage.Member, error) {
	return scanMembers(r.query(ctx, `SELECT `+memberCols+` FROM room_members WHERE user_id = $1 ORDER BY pos`, userID))
}

func (r reader) Members(ctx context.Context, roomID string, memberships ...string) ([]storage.Member, error) {
	if len(memberships) == 0 {
		return scanMembers(r.query(ctx, `SELECT `+memberCols+` FROM room_members WHERE room_id = $1 ORDER BY pos`, roomID))
	}
	return scanMembers(r.query(ctx, `SELECT `+memberCols+` FROM room_members WHERE room_id = $1 AND membership IN (`+inList(2, len(memberships))+`) ORDER BY pos`,
		append([]any{roomID}, anys(memberships)...)...))
}

func (r reader) MemberEvents(ctx context.Context, roomID string) ([]storage.Event, error) {
	return r.memberDeltas(ctx, `SELECT d.pos, `+eventColsE+` FROM state_deltas d JOIN events e ON e.event_id = d.event_id
		WHERE d.room_id = $1 AND d.type = 'm.room.member' ORDER BY d.pos`, roomID)
}

func (r reader) UserMemberEvents(ctx context.Context, roomID, userID string) ([]storage.Event, error) {
	return r.memberDeltas(ctx, `SELECT d.pos, `+eventColsE+` FROM state_deltas d JOIN events e ON e.event_id = d.event_id
		WHERE d.room_id = $1 AND d.type = 'm.room.member' AND d.state_key = $2 ORDER BY d.pos`, roomID, userID)
}

// memberDeltas reads member events with the position they became current at, and sets
// each one's PrevMembership to the membership it replaced.
func (r reader) memberDeltas(ctx context.Context, q string, args ...any) ([]storage.Event, error) {
	rows, err := r.query(ctx, q, args...)
	evs, err := collect(rows, err, func(rows *sql.Rows) (storage.Event, error) {
		var at stream.Pos
		e, err := scanEventWith(rows, &at)
		e.Pos = at
		return e, err
	})
	if err != nil {
		return nil, err
	}
	last := map[string]string{}
	for i := range evs {
		u := *evs[i].StateKey
		evs[i].PrevMembership = last[u]
		last[u] = evs[i].Membership
	}
	return evs, nil
}

func (r reader) NextStateEvent(ctx context.Context, roomID string, key storage.StateKeyOf, after stream.Pos) (storage.Event, error) {
	e, err := scanEvent(r.row(ctx, `SELECT `+eventCols+` FROM events WHERE room_id = $1 AND type = $2 AND state_key = $3 AND pos > $4 ORDER BY pos LIMIT 1`,
		roomID, key.Type, key.StateKey, after))
	return e, translate(err)
}

func (r reader) SharesRoom(ctx context.Context, userA, userB string) (bool, error) {
	var n int
	err := r.row(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM room_members a JOIN room_members b ON b.room_id = a.room_id
		WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = $2 AND b.membership = 'join' LIMIT 1) shared`, userA, userB).Scan(&n)
	return n > 0, translate(err)
}

func (r reader) GuestMembers(ctx context.Context, roomID string) ([]string, error) {
	rows, err := r.query(ctx, `SELECT m.user_id FROM room_members m JOIN users u ON u.user_id = m.user_id
		WHERE m.room_id = $1 AND m.membership IN ('join', 'invite') AND u.is_guest ORDER BY m.pos`, roomID)
	return collect(rows, err, func(rows *sql.Rows) (string, error) { var s string; return s, rows.Scan(&s) })
}

func (r reader) MemberCounts(ctx context.Context, roomID string) (joined, invited int, err error) {
	err = r.row(ctx, `SELECT
		COALESCE(SUM(CASE WHEN membership = 'join' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN membership = 'invite' THEN 1 ELSE 0 END), 0)
		FROM room_members WHERE room_id = $1`, roomID).Scan(&joined, &invited)
	return joined, invited, translate(err)
}

func (r reader) TxnEvent(ctx context.Context, userID, deviceID, roomID, txnID string) (string, error) {
	var id string
	err := r.row(ctx, `SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND room_id = $3 AND txn_id = $4`, userID, deviceID, roomID, txnID).Scan(&id)
	return id, translate(err)
}

func (r reader) AliasRoom(ctx context.Context, alias string) (storage.Alias, error) {
	var a storage.Alias
	err := r.row(ctx, `SELECT alias, room_id, creator FROM room_aliases WHERE alias = $1`, alias).Scan(&a.Alias, &a.RoomID, &a.Creator)
	return a, translate(err)
}

func (r reader) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	rows, err := r.query(ctx, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, roomID)
	return collect(rows, err, func(rows *sql.Rows) (string, error) { var s string; return s, rows.Scan(&s) })
}

// directoryTypesSQL lists storage.DirectoryStateTypes for an IN clause (constants, so no
// parameters are needed).
var directoryTypesSQL = "'" + strings.Join(storage.DirectoryStateTypes, "', '") + "'"

func (r reader) PublishedRooms(ctx context.Context, lists storage.DirectoryLists) ([]storage.PublishedRoom, error) {
	where, args := `r.published`, []any{}
	switch {
	case lists.All:
		where = `r.published OR EXISTS (SELECT 1 FROM appservice_room_list l WHERE l.room_id = r.room_id)`
	case lists.AppServiceID != "":
		where = `EXISTS (SELECT 1 FROM appservice_room_list l WHERE l.room_id = r.room_id AND l.appservice_id = $1 AND l.network_id = $2)`
		args = []any{lists.AppServiceID, lists.NetworkID}
	}
	rows, err := r.query(ctx, `SELECT r.room_id,
		(SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.room_id AND m.membership = 'join'),
		e.type, e.pdu
		FROM rooms r
		LEFT JOIN room_state s ON s.room_id = r.room_id AND s.state_key = '' AND s.type IN (`+directoryTypesSQL+`)
		LEFT JOIN events e ON e.event_id = s.event_id
		WHERE (`+where+`) ORDER BY r.created_pos, r.room_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.PublishedRoom
	for rows.Next() {
		var roomID string
		var joined int
		var evType, pdu sql.NullString
		if err := rows.Scan(&roomID, &joined, &evType, &pdu); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].RoomID != roomID {
			out = append(out, storage.PublishedRoom{RoomID: roomID, Joined: joined})
		}
		if evType.Valid {
			last := &out[len(out)-1]
			sk := ""
			last.State = append(last.State, storage.Event{RoomID: roomID, Type: evType.String, StateKey: &sk, PDU: []byte(pdu.String)})
		}
	}
	return out, rows.Err()
}

// --- ephemeral streams ---

const receiptCols = `pos, room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts`

func scanReceipt(rows *sql.Rows) (storage.Receipt, error) {
	var rc storage.Receipt
	return rc, rows.Scan(&rc.Pos, &rc.RoomID, &rc.Type, &rc.UserID, &rc.ThreadID, &rc.EventID, &rc.EventPos, &rc.TS)
}

func scanReceipts(rows *sql.Rows, err error) ([]storage.Receipt, error) {
	return collect(rows, err, scanReceipt)
}

func (r reader) Receipts(ctx context.Context, roomID string, from, to stream.Pos) ([]storage.Receipt, error) {
	return scanReceipts(r.query(ctx, `SELECT `+receiptCols+` FROM receipts WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos`, roomID, from, to))
}

func (r reader) ReceiptsForRooms(ctx context.Context, roomIDs []string, from, to stream.Pos) ([]storage.Receipt, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	rs, err := queryIn(r, ctx, `SELECT `+receiptCols+` FROM receipts WHERE pos > $1 AND pos <= $2 AND room_id IN (%s)`, []any{from, to}, roomIDs, scanReceipt)
	slices.SortFunc(rs, func(a, b storage.Receipt) int { return cmp.Compare(a.Pos, b.Pos) })
	return rs, err
}

func (r reader) UserReceipt(ctx context.Context, roomID, userID, receiptType string) (storage.Receipt, error) {
	rows, err := r.query(ctx, `SELECT `+receiptCols+` FROM receipts WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 ORDER BY pos DESC LIMIT 1`, roomID, userID, receiptType)
	rcs, err := scanReceipts(rows, err)
	if err != nil {
		return storage.Receipt{}, err
	}
	if len(rcs) == 0 {
		return storage.Receipt{}, storage.ErrNotFound
	}
	return rcs[0], nil
}

func (r reader) TypingIn(ctx context.Context, roomID string) (storage.Typing, error) {
	t := storage.Typing{RoomID: roomID}
	var raw string
	err := r.row(ctx, `SELECT user_ids, pos FROM typing WHERE room_id = $1`, roomID).Scan(&raw, &t.Pos)
	if err != nil {
		return t, translate(err)
	}
	return t, json.Unmarshal([]byte(raw), &t.UserIDs)
}

const presenceCols = `user_id, state, status_msg, last_active_ts, currently_active, pos`

func scanPresence(rows interface{ Scan(...any) error }) (storage.Presence, error) {
	var p storage.Presence
	var msg sql.NullString
	err := rows.Scan(&p.UserID, &p.State, &msg, &p.LastActiveTS, &p.CurrentlyActive, &p.Pos)
	p.StatusMsg = nullPtr(msg)
	return p, err
}

func (r reader) Presence(ctx context.Context, userID string) (storage.Presence, error) {
	p, err := scanPresence(r.row(ctx, `SELECT `+presenceCols+` FROM presence WHERE user_id = $1`, userID))
	return p, translate(err)
}

func (r reader) PresenceFor(ctx context.Context, userIDs []string, from, to stream.Pos) ([]storage.Presence, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	ps, err := queryIn(r, ctx, `SELECT `+presenceCols+` FROM presence WHERE pos > $1 AND pos <= $2 AND user_id IN (%s)`, []any{from, to}, userIDs,
		func(rows *sql.Rows) (storage.Presence, error) { return scanPresence(rows) })
	slices.SortFunc(ps, func(a, b storage.Presence) int { return cmp.Compare(a.Pos, b.Pos) })
	return ps, err
}

func scanAccountData(rows interface{ Scan(...any) error }) (storage.AccountData, error) {
	var a storage.AccountData
	var content string
	err := rows.Scan(&a.UserID, &a.RoomID, &a.Type, &content, &a.Pos)
	a.Content = []byte(content)
	return a, err
}

func (r reader) AccountData(ctx context.Context, userID string, from, to stream.Pos) ([]storage.AccountData, error) {
	rows, err := r.query(ctx, `SELECT user_id, room_id, type, content, pos FROM account_data WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos`, userID, from, to)
	return collect(rows, err, func(rows *sql.Rows) (storage.AccountData, error) { return scanAccountData(rows) })
}

func (r reader) AccountDataItem(ctx context.Context, userID, roomID, dataType string) (storage.AccountData, error) {
	a, err := scanAccountData(r.row(ctx, `SELECT user_id, room_id, type, content, pos FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`, userID, roomID, dataType))
	return a, translate(err)
}

func (r reader) AccountDataOfUsers(ctx context.Context, userIDs []string, roomID, dataType string) ([]storage.AccountData, error) {
	var out []storage.AccountData
	for start := 0; start < len(userIDs); start += 500 {
		chunk := userIDs[start:min(start+500, len(userIDs))]
		rows, err := r.query(ctx, `SELECT user_id, room_id, type, content, pos FROM account_data WHERE room_id = $1 AND type = $2 AND user_id IN (`+inList(3, len(chunk))+`)`,
			append([]any{roomID, dataType}, anys(chunk)...)...)
		got, err := collect(rows, err, func(rows *sql.Rows) (storage.AccountData, error) { return scanAccountData(rows) })
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func (r reader) StreamRange(ctx context.Context, from, to stream.Pos) (storage.StreamBatch, error) {
	var b storage.StreamBatch
	var err error
	if b.Events, err = scanEvents(r.query(ctx, `SELECT `+eventCols+` FROM events WHERE pos > $1 AND pos <= $2 AND `+inTimeline+` ORDER BY pos`, from, to)); err != nil {
		return b, err
	}
	if b.State, err = r.stateDeltas(ctx, from, to); err != nil {
		return b, err
	}
	if b.Receipts, err = scanReceipts(r.query(ctx, `SELECT `+receiptCols+` FROM receipts WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)); err != nil {
		return b, err
	}
	rows, err := r.query(ctx, `SELECT room_id, user_ids, pos FROM typing WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)
	b.Typing, err = collect(rows, err, func(rows *sql.Rows) (storage.Typing, error) {
		var t storage.Typing
		var raw string
		if err := rows.Scan(&t.RoomID, &raw, &t.Pos); err != nil {
			return t, err
		}
		return t, json.Unmarshal([]byte(raw), &t.UserIDs)
	})
	if err != nil {
		return b, err
	}
	rows, err = r.query(ctx, `SELECT `+presenceCols+` FROM presence WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)
	if b.Presence, err = collect(rows, err, func(rows *sql.Rows) (storage.Presence, error) { return scanPresence(rows) }); err != nil {
		return b, err
	}
	rows, err = r.query(ctx, `SELECT user_id, room_id, type, content, pos FROM account_data WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)
	if b.AccountData, err = collect(rows, err, func(rows *sql.Rows) (storage.AccountData, error) { return scanAccountData(rows) }); err != nil {
		return b, err
	}
	if b.Push, err = r.pushRange(ctx, from, to); err != nil {
		return b, err
	}
	return b, r.streamRangeE2EE(ctx, &b, from, to)
}

func nullPtr(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	v := s.String
	return &v
}

func ptrNull(s *string) sql.NullString {
	if s == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *s, Valid: true}
}

// stateDeltas reads the current-state changes of every room in (from, to], by position.
func (r reader) stateDeltas(ctx context.Context, from, to stream.Pos) (map[stream.Pos][]storage.Event, error) {
	type delta struct {
		pos                     stream.Pos
		roomID, evType, key, id string
	}
	rows, err := r.query(ctx, `SELECT pos, room_id, type, state_key, event_id FROM state_deltas WHERE pos > $1 AND pos <= $2 ORDER BY pos`, from, to)
	deltas, err := collect(rows, err, func(rows *sql.Rows) (delta, error) {
		var d delta
		var ev sql.NullString
		err := rows.Scan(&d.pos, &d.roomID, &d.evType, &d.key, &ev)
		d.id = ev.String
		return d, err
	})
	if err != nil || len(deltas) == 0 {
		return nil, err
	}
	var ids []string
	for _, d := range deltas {
		if d.id != "" {
			ids = append(ids, d.id)
		}
	}
	evs, err := r.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*storage.Event, len(evs))
	for i := range evs {
		byID[evs[i].ID] = &evs[i]
	}
	out := map[stream.Pos][]storage.Event{}
	for _, d := range deltas {
		if e := byID[d.id]; e != nil {
			out[d.pos] = append(out[d.pos], *e)
		} else {
			key := d.key
			out[d.pos] = append(out[d.pos], storage.Event{RoomID: d.roomID, Type: d.evType, StateKey: &key})
		}
	}
	return out, nil
}
