package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json/v2"
	"math"
	"strings"

	"github.com/mattn/go-sqlite3"

	"porthole/internal/storage"
)

// searchText is the indexed text of an event: its body, room name or topic.
func searchText(e *storage.Event) (string, bool) {
	field := ""
	switch e.Type {
	case "m.room.message":
		field = "body"
	case "m.room.name":
		field = "name"
	case "m.room.topic":
		field = "topic"
	default:
		return "", false
	}
	if e.Outlier != "" || e.RedactedBecause != nil {
		return "", false
	}
	var pdu struct {
		Content map[string]any `json:"content"`
	}
	if json.Unmarshal(e.PDU, &pdu) != nil {
		return "", false
	}
	text, ok := pdu.Content[field].(string)
	return text, ok && text != ""
}

// indexForSearch adds a timeline event's text to the full-text index.
func (t *txn) indexForSearch(ctx context.Context, e *storage.Event) error {
	text, ok := searchText(e)
	if !ok {
		return nil
	}
	var err error
	if t.d == postgresDialect {
		_, err = t.exec(ctx, `INSERT INTO event_search (pos, vector) VALUES ($1, to_tsvector('english', $2))`, e.Pos, text)
	} else {
		_, err = t.exec(ctx, `INSERT INTO event_search (docid, value) VALUES ($1, $2)`, e.Pos, text)
	}
	return err
}

// unindex removes a redacted event from the full-text index.
func (t *txn) unindex(ctx context.Context, eventID string) error {
	key := "docid"
	if t.d == postgresDialect {
		key = "pos"
	}
	_, err := t.exec(ctx, `DELETE FROM event_search WHERE `+key+` = (SELECT pos FROM events WHERE event_id = $1)`, eventID)
	return err
}

// searchFrom renders the FROM and WHERE of a search and its arguments, after n already
// numbered ones.
func (d dialect) searchFrom(q storage.SearchQuery, args []any) (string, []any) {
	var b strings.Builder
	arg := func(v any) string {
		args = append(args, v)
		return "$" + itoa(len(args))
	}
	if d == postgresDialect {
		// Prefix matching of every word, as SQLite's query below; the words hold only
		// letters, digits and marks, so they cannot be tsquery syntax.
		terms := make([]string, len(q.Words))
		for i, w := range q.Words {
			terms[i] = w + ":*"
		}
		b.WriteString(` FROM event_search s JOIN events e ON e.pos = s.pos, to_tsquery('english', ` + arg(strings.Join(terms, " & ")) + `) query WHERE s.vector @@ query`)
	} else {
		terms := make([]string, len(q.Words))
		for i, w := range q.Words {
			terms[i] = `"` + w + `*"`
		}
		b.WriteString(` FROM event_search s JOIN events e ON e.pos = s.docid WHERE s.value MATCH ` + arg(strings.Join(terms, " ")))
	}
	b.WriteString(` AND e.type IN (`)
	for i, t := range q.Types {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(arg(t))
	}
	b.WriteString(`) AND e.room_id IN (SELECT room_id FROM room_members WHERE user_id = ` + arg(q.Member) + ` AND membership = 'join')`)
	if q.RoomIDs != nil {
		b.WriteString(` AND e.room_id IN (`)
		for i, r := range q.RoomIDs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(arg(r))
		}
		b.WriteString(`)`)
	}
	return b.String(), args
}

func (r reader) SearchEvents(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, error) {
	if len(q.Words) == 0 || len(q.Types) == 0 || len(q.RoomIDs) > storage.MaxSearchRooms || (q.RoomIDs != nil && len(q.RoomIDs) == 0) {
		return nil, nil
	}
	rank := `porthole_rank(matchinfo(s.event_search))`
	if r.d == postgresDialect {
		rank = `ts_rank_cd(s.vector, query)`
	}
	from, args := r.d.searchFrom(q, nil)
	query := `SELECT ` + rank + ` AS rank, ` + eventColsE + from
	if q.ByRank {
		query += ` ORDER BY rank DESC, e.pos DESC LIMIT $` + itoa(len(args)+1) + ` OFFSET $` + itoa(len(args)+2)
		args = append(args, q.Limit, q.Offset)
	} else {
		if q.Before > 0 {
			args = append(args, q.Before)
			query += ` AND e.pos < $` + itoa(len(args))
		}
		query += ` ORDER BY e.pos DESC LIMIT $` + itoa(len(args)+1)
		args = append(args, q.Limit)
	}
	rows, err := r.query(ctx, query, args...)
	return collect(rows, err, func(rows *sql.Rows) (storage.SearchHit, error) {
		var h storage.SearchHit
		var err error
		h.Event, err = scanEventWith(rows, &h.Rank)
		return h, err
	})
}

func (r reader) CountSearch(ctx context.Context, q storage.SearchQuery) (int, error) {
	if len(q.Words) == 0 || len(q.Types) == 0 || len(q.RoomIDs) > storage.MaxSearchRooms || (q.RoomIDs != nil && len(q.RoomIDs) == 0) {
		return 0, nil
	}
	from, args := r.d.searchFrom(q, nil)
	var n int
	err := r.row(ctx, `SELECT COUNT(*)`+from, args...).Scan(&n)
	return n, err
}

// searchRank is Synapse's relevance for SQLite's FTS4: over every phrase and column of
// matchinfo's "pcx" answer, the share of the phrase's hits across the table that fall in
// this row.
func searchRank(matchinfo []byte) float64 {
	u := func(i int) uint32 {
		if 4*i+4 > len(matchinfo) {
			return 0
		}
		b := matchinfo[4*i:]
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
	phrases, cols := int(u(0)), int(u(1))
	score := 0.0
	for p := 0; p < phrases && p < 64; p++ {
		for c := 0; c < cols && c < 8; c++ {
			i := 2 + (p*cols+c)*3
			if hits, all := u(i), u(i+1); hits > 0 && all > 0 {
				score += float64(hits) / float64(all)
			}
		}
	}
	if math.IsNaN(score) {
		return 0
	}
	return score
}

// sqliteDriver is go-sqlite3 with the functions the SQL above calls.
const sqliteDriver = "sqlite3_porthole"

func init() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		return c.RegisterFunc("porthole_rank", searchRank, true)
	}})
}
