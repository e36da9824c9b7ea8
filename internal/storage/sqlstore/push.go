package sqlstore

import (
	"context"
	"database/sql"
	"strings"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Push outcomes, counts and notifications: see storage.PushReader.

const pushEventCols = `e.pos, e.room_id, e.thread_id, e.sender, e.ts, e.notify, e.highlight, e.actions`

func scanPushOutcomes(rows *sql.Rows, err error) ([]storage.PushOutcome, error) {
	return collect(rows, err, func(rows *sql.Rows) (storage.PushOutcome, error) {
		var o storage.PushOutcome
		err := rows.Scan(&o.Pos, &o.RoomID, &o.ThreadID, &o.Sender, &o.TS, &o.Base.Notify, &o.Base.Highlight, &o.Base.Actions)
		return o, err
	})
}

// attachExceptions reads the exceptions of outcomes (all with from <= pos <= to, of one
// room unless roomID is "") and attaches them.
func (r reader) attachExceptions(ctx context.Context, outs []storage.PushOutcome, roomID string, from, to stream.Pos) error {
	if len(outs) == 0 {
		return nil
	}
	q := `SELECT pos, user_id, notify, highlight, actions FROM push_exceptions WHERE pos >= $1 AND pos <= $2`
	args := []any{from, to}
	if roomID != "" {
		q += ` AND room_id = $3`
		args = append(args, roomID)
	}
	rows, err := r.query(ctx, q+` ORDER BY pos, user_id`, args...)
	type exc struct {
		pos stream.Pos
		x   storage.PushException
	}
	xs, err := collect(rows, err, func(rows *sql.Rows) (exc, error) {
		var e exc
		err := rows.Scan(&e.pos, &e.x.UserID, &e.x.Notify, &e.x.Highlight, &e.x.Actions)
		return e, err
	})
	if err != nil {
		return err
	}
	byPos := make(map[stream.Pos]int, len(outs))
	for i := range outs {
		byPos[outs[i].Pos] = i
	}
	for _, e := range xs {
		if i, ok := byPos[e.pos]; ok {
			outs[i].Exceptions = append(outs[i].Exceptions, e.x)
		}
	}
	return nil
}

func (r reader) PushOutcomes(ctx context.Context, roomID string, from, to stream.Pos, limit int) ([]storage.PushOutcome, error) {
	outs, err := scanPushOutcomes(r.query(ctx, `SELECT `+pushEventCols+` FROM push_events e
		JOIN events ev ON ev.pos = e.pos AND ev.redacted_because IS NULL
		WHERE e.room_id = $1 AND e.pos > $2 AND e.pos <= $3 ORDER BY e.pos DESC LIMIT $4`, roomID, from, to, limit))
	if err != nil || len(outs) == 0 {
		return outs, err
	}
	return outs, r.attachExceptions(ctx, outs, roomID, outs[len(outs)-1].Pos, outs[0].Pos)
}

// pushRange is every push outcome with from < pos <= to (catching up on other nodes).
func (r reader) pushRange(ctx context.Context, from, to stream.Pos) ([]storage.PushOutcome, error) {
	outs, err := scanPushOutcomes(r.query(ctx, `SELECT `+pushEventCols+` FROM push_events e WHERE e.pos > $1 AND e.pos <= $2 ORDER BY e.pos`, from, to))
	if err != nil || len(outs) == 0 {
		return outs, err
	}
	return outs, r.attachExceptions(ctx, outs, "", outs[0].Pos, outs[len(outs)-1].Pos)
}

func (r reader) PushCounts(ctx context.Context, roomID, userID string, after stream.Pos) ([]storage.PushCount, error) {
	rows, err := r.query(ctx, `SELECT e.thread_id,
		SUM(CASE WHEN COALESCE(x.notify, e.notify) THEN 1 ELSE 0 END),
		SUM(CASE WHEN COALESCE(x.notify, e.notify) AND COALESCE(x.highlight, e.highlight) THEN 1 ELSE 0 END)
		FROM push_events e
		JOIN events ev ON ev.pos = e.pos AND ev.redacted_because IS NULL
		LEFT JOIN push_exceptions x ON x.pos = e.pos AND x.user_id = $2
		WHERE e.room_id = $1 AND e.pos > $3 AND e.sender <> $2
		GROUP BY e.thread_id ORDER BY e.thread_id`, roomID, userID, after)
	return collect(rows, err, func(rows *sql.Rows) (storage.PushCount, error) {
		var c storage.PushCount
		err := rows.Scan(&c.ThreadID, &c.Notify, &c.Highlight)
		return c, err
	})
}

func (r reader) Notifications(ctx context.Context, userID string, before stream.Pos, limit int, onlyHighlight bool) ([]storage.Notification, error) {
	if before <= 0 {
		before = 1 << 62
	}
	want := `e.notify`
	wantX := `x.notify`
	if onlyHighlight {
		want += ` AND e.highlight`
		wantX += ` AND x.highlight`
	}
	rows, err := r.query(ctx, `SELECT n.pos, ev.event_id, n.room_id, n.thread_id, n.ts, n.notify, n.highlight, n.actions FROM (
			SELECT e.pos, e.room_id, e.thread_id, e.ts, e.notify, e.highlight, e.actions FROM push_events e
			JOIN room_members m ON m.room_id = e.room_id AND m.user_id = $1 AND m.membership = 'join'
			WHERE e.pos > m.joined_pos AND e.pos < $2 AND e.sender <> $1 AND `+want+`
			AND NOT EXISTS (SELECT 1 FROM push_exceptions x WHERE x.pos = e.pos AND x.user_id = $1)
			UNION ALL
			SELECT x.pos, x.room_id, e.thread_id, e.ts, x.notify, x.highlight, x.actions FROM push_exceptions x
			JOIN push_events e ON e.pos = x.pos
			WHERE x.user_id = $1 AND x.pos < $2 AND `+wantX+`
		) n JOIN events ev ON ev.pos = n.pos AND ev.redacted_because IS NULL
		ORDER BY n.pos DESC LIMIT $3`, userID, before, limit)
	return collect(rows, err, func(rows *sql.Rows) (storage.Notification, error) {
		var n storage.Notification
		err := rows.Scan(&n.Pos, &n.EventID, &n.RoomID, &n.ThreadID, &n.TS, &n.Notify, &n.Highlight, &n.Actions)
		return n, err
	})
}

func (r reader) UserReceipts(ctx context.Context, userID string) ([]storage.Receipt, error) {
	return scanReceipts(r.query(ctx, `SELECT `+receiptCols+` FROM receipts WHERE user_id = $1 AND receipt_type IN ('m.read', 'm.read.private') ORDER BY pos`, userID))
}

func (t *txn) PutPushOutcome(ctx context.Context, o storage.PushOutcome) error {
	if _, err := t.exec(ctx, `INSERT INTO push_events (pos, room_id, thread_id, sender, notify, highlight, actions, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		o.Pos, o.RoomID, o.ThreadID, o.Sender, o.Base.Notify, o.Base.Highlight, o.Base.Actions, o.TS); err != nil {
		return err
	}
	// Several rows per statement: one round trip per hundred members on PostgreSQL.
	const per = 100
	for start := 0; start < len(o.Exceptions); start += per {
		chunk := o.Exceptions[start:min(start+per, len(o.Exceptions))]
		var b strings.Builder
		b.WriteString(`INSERT INTO push_exceptions (pos, user_id, room_id, notify, highlight, actions) VALUES `)
		args := make([]any, 0, 6*len(chunk))
		for i, x := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(" + inList(len(args)+1, 6) + ")")
			args = append(args, o.Pos, x.UserID, o.RoomID, x.Notify, x.Highlight, x.Actions)
		}
		if _, err := t.exec(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}
