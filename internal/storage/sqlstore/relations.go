package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

const relationCols = `event_id, room_id, relates_to_id, rel_type, aggregation_key, new_content, pos, type, sender, origin_ts, visibility`

func scanRelation(rows interface{ Scan(...any) error }) (storage.Relation, error) {
	var r storage.Relation
	err := rows.Scan(&r.EventID, &r.RoomID, &r.Parent, &r.RelType, &r.Key, &r.NewContent, &r.Pos, &r.Type, &r.Sender, &r.OriginTS, &r.Visibility)
	return r, err
}

func scanRelations(rows *sql.Rows, err error) ([]storage.Relation, error) {
	return collect(rows, err, func(rows *sql.Rows) (storage.Relation, error) { return scanRelation(rows) })
}

// RelationChildren reads at most perType children per parent and type with one window
// function, so that a thread of thousands of replies costs a bounded read.
func (r reader) RelationChildren(ctx context.Context, roomID string, parents []string, upTo stream.Pos, perType int) ([]storage.Relation, error) {
	if len(parents) == 0 {
		return nil, nil
	}
	return queryIn(r, ctx, `SELECT `+relationCols+` FROM (
		SELECT `+relationCols+`, ROW_NUMBER() OVER (PARTITION BY relates_to_id, rel_type ORDER BY pos DESC) AS n
		FROM event_relations
		WHERE room_id = $1 AND pos <= $2 AND rel_type IN ('m.thread', 'm.replace', 'm.reference') AND relates_to_id IN (%s)
	) AS x WHERE n <= $3 ORDER BY pos DESC`, []any{roomID, upTo, perType}, parents,
		func(rows *sql.Rows) (storage.Relation, error) { return scanRelation(rows) })
}

// relationDepth is how many levels of relations a recursive query follows.
const relationDepth = 3

func (r reader) Relations(ctx context.Context, q storage.RelationQuery) ([]storage.Relation, error) {
	args := []any{q.RoomID, q.Parent, q.After, q.UpTo}
	var where strings.Builder
	for _, f := range []struct{ col, val string }{{"rel_type", q.RelType}, {"type", q.EventType}, {"sender", q.Sender}, {"aggregation_key", q.Key}} {
		if f.val != "" {
			args = append(args, f.val)
			where.WriteString(" AND " + f.col + " = $" + itoa(len(args)))
		}
	}
	order := "DESC"
	if q.Forward {
		order = "ASC"
	}
	args = append(args, q.Limit)
	limit := " ORDER BY pos " + order + " LIMIT $" + itoa(len(args))
	if !q.Recurse {
		return scanRelations(r.query(ctx, `SELECT `+relationCols+` FROM event_relations
			WHERE room_id = $1 AND relates_to_id = $2 AND pos > $3 AND pos <= $4`+where.String()+limit, args...))
	}
	// The filters apply to every level's events: a child reached only through an
	// excluded event is still found (the spec leaves that to the server; Synapse does
	// the same).
	return scanRelations(r.query(ctx, `WITH RECURSIVE related (event_id, depth) AS (
			SELECT event_id, 1 FROM event_relations WHERE room_id = $1 AND relates_to_id = $2
			UNION
			SELECT c.event_id, related.depth + 1 FROM event_relations c JOIN related ON c.relates_to_id = related.event_id
			WHERE c.room_id = $1 AND related.depth < `+itoa(relationDepth)+`
		)
		SELECT `+relationCols+` FROM event_relations
		WHERE event_id IN (SELECT event_id FROM related) AND pos > $3 AND pos <= $4`+where.String()+limit, args...))
}

func (r reader) Threads(ctx context.Context, roomID string, before stream.Pos, participant string, limit int) ([]storage.Thread, error) {
	args := []any{roomID, before, limit}
	filter := ""
	if participant != "" {
		args = append(args, participant)
		filter = ` AND (EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.thread_id AND e.sender = $4)
			OR EXISTS (SELECT 1 FROM event_relations c WHERE c.relates_to_id = t.thread_id AND c.rel_type = 'm.thread' AND c.sender = $4))`
	}
	rows, err := r.query(ctx, `SELECT t.thread_id, t.latest_pos, t.latest_event_id FROM threads t
		WHERE t.room_id = $1 AND t.latest_pos < $2`+filter+` ORDER BY t.latest_pos DESC LIMIT $3`, args...)
	return collect(rows, err,
		func(rows *sql.Rows) (storage.Thread, error) {
			var th storage.Thread
			return th, rows.Scan(&th.RootID, &th.LatestPos, &th.LatestID)
		})
}

func (t *txn) PutRelation(ctx context.Context, rel storage.Relation) error {
	_, err := t.exec(ctx, `INSERT INTO event_relations (`+relationCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		rel.EventID, rel.RoomID, rel.Parent, rel.RelType, rel.Key, rel.NewContent, rel.Pos, rel.Type, rel.Sender, rel.OriginTS, rel.Visibility)
	if err != nil || rel.RelType != "m.thread" {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO threads (room_id, thread_id, latest_event_id, latest_pos) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id, thread_id) DO UPDATE SET latest_event_id = excluded.latest_event_id, latest_pos = excluded.latest_pos
		WHERE threads.latest_pos < excluded.latest_pos`, rel.RoomID, rel.Parent, rel.EventID, rel.Pos)
	return err
}

func (t *txn) DeleteRelation(ctx context.Context, eventID string) error {
	rel, err := scanRelation(t.row(ctx, `SELECT `+relationCols+` FROM event_relations WHERE event_id = $1`, eventID))
	if err != nil {
		return translate(err)
	}
	if _, err := t.exec(ctx, `DELETE FROM event_relations WHERE event_id = $1`, eventID); err != nil {
		return err
	}
	if rel.RelType != "m.thread" {
		return nil
	}
	var latestID string
	var latestPos stream.Pos
	err = t.row(ctx, `SELECT event_id, pos FROM event_relations WHERE room_id = $1 AND relates_to_id = $2 AND rel_type = 'm.thread' ORDER BY pos DESC LIMIT 1`,
		rel.RoomID, rel.Parent).Scan(&latestID, &latestPos)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = t.exec(ctx, `DELETE FROM threads WHERE room_id = $1 AND thread_id = $2`, rel.RoomID, rel.Parent)
		return err
	} else if err != nil {
		return err
	}
	_, err = t.exec(ctx, `UPDATE threads SET latest_event_id = $1, latest_pos = $2 WHERE room_id = $3 AND thread_id = $4`,
		latestID, latestPos, rel.RoomID, rel.Parent)
	return err
}
