package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"porthole/internal/hstest"
	"porthole/internal/storage"
	"porthole/internal/storage/sqlstore"
	"porthole/internal/stream"
)

func relIDs(rs []storage.Relation) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.EventID
	}
	return out
}

func TestRelationsConformance(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			write := func(fn func(tx storage.Tx) error) {
				t.Helper()
				if err := s.Write(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			room := "!rel:hs"
			// $root <- $t1, $t2 (thread), $e1 (edit), $x (annotation); $t1 <- $r1 (reference) <- $a1 (annotation)
			// $other root <- $o1 (thread)
			var pos = map[string]stream.Pos{}
			write(func(tx storage.Tx) error {
				p, _ := tx.NextPos(ctx)
				if err := tx.CreateRoom(ctx, storage.Room{ID: room, Version: "11", Creator: "@a:hs", CreatedPos: p}); err != nil {
					return err
				}
				for i, ev := range []struct{ id, parent, relType, sender, key string }{
					{"$root", "", "", "@a:hs", ""}, {"$other", "", "", "@b:hs", ""},
					{"$t1", "$root", "m.thread", "@b:hs", ""}, {"$e1", "$root", "m.replace", "@a:hs", ""},
					{"$o1", "$other", "m.thread", "@b:hs", ""}, {"$r1", "$t1", "m.reference", "@c:hs", ""},
					{"$x", "$root", "m.annotation", "@c:hs", "👍"}, {"$a1", "$r1", "m.annotation", "@c:hs", "👎"},
					{"$t2", "$root", "m.thread", "@c:hs", ""},
				} {
					p, _ := tx.NextPos(ctx)
					pos[ev.id] = p
					if err := tx.InsertEvent(ctx, &storage.Event{Pos: p, ID: ev.id, RoomID: room, Type: "m.room.message", Sender: ev.sender,
						Depth: int64(i + 1), OriginTS: int64(i), PDU: []byte(`{}`), Visibility: "shared"}); err != nil {
						return err
					}
					if ev.parent == "" {
						continue
					}
					if err := tx.PutRelation(ctx, storage.Relation{EventID: ev.id, RoomID: room, Parent: ev.parent, RelType: ev.relType, Key: ev.key,
						NewContent: ev.relType == "m.replace", Pos: p, Type: "m.room.message", Sender: ev.sender, OriginTS: int64(i), Visibility: "shared"}); err != nil {
						return err
					}
				}
				return nil
			})
			top := pos["$t2"]
			// Aggregated children: thread, edit and reference only, newest first, capped per type.
			kids, err := s.RelationChildren(ctx, room, []string{"$root", "$t1"}, top, 10)
			if got := relIDs(kids); err != nil || !slices.Equal(got, []string{"$t2", "$r1", "$e1", "$t1"}) {
				t.Fatalf("children: %v %v", got, err)
			}
			if e := kids[2]; e.Parent != "$root" || e.RelType != "m.replace" || !e.NewContent || e.Sender != "@a:hs" || e.Visibility != "shared" || e.Pos != pos["$e1"] {
				t.Fatalf("child fields: %+v", e)
			}
			kids, _ = s.RelationChildren(ctx, room, []string{"$root"}, top, 1)
			if got := relIDs(kids); !slices.Equal(got, []string{"$t2", "$e1"}) {
				t.Fatalf("one per type: %v", got)
			}
			kids, _ = s.RelationChildren(ctx, room, []string{"$root"}, pos["$t2"]-1, 10)
			if got := relIDs(kids); !slices.Equal(got, []string{"$e1", "$t1"}) {
				t.Fatalf("up to a position: %v", got)
			}
			if kids, _ := s.RelationChildren(ctx, "!elsewhere:hs", []string{"$root"}, top, 10); len(kids) != 0 {
				t.Fatalf("another room's children: %v", kids)
			}
			// Pages both ways, with filters, and recursion.
			q := storage.RelationQuery{RoomID: room, Parent: "$root", UpTo: top, Limit: 10}
			page := func(q storage.RelationQuery) []string {
				t.Helper()
				rs, err := s.Relations(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				return relIDs(rs)
			}
			if got := page(q); !slices.Equal(got, []string{"$t2", "$x", "$e1", "$t1"}) {
				t.Fatalf("backward: %v", got)
			}
			fq := q
			fq.Forward, fq.After, fq.Limit = true, pos["$t1"], 2
			if got := page(fq); !slices.Equal(got, []string{"$e1", "$x"}) {
				t.Fatalf("forward after $t1: %v", got)
			}
			tq := q
			tq.RelType = "m.thread"
			if got := page(tq); !slices.Equal(got, []string{"$t2", "$t1"}) {
				t.Fatalf("threads only: %v", got)
			}
			aq := q
			aq.RelType, aq.EventType, aq.Sender, aq.Key = "m.annotation", "m.room.message", "@c:hs", "👍"
			if got := page(aq); !slices.Equal(got, []string{"$x"}) {
				t.Fatalf("the annotation: %v", got)
			}
			aq.Key = "👎"
			if got := page(aq); len(got) != 0 {
				t.Fatalf("another key: %v", got)
			}
			rq := q
			rq.Recurse = true
			if got := page(rq); !slices.Equal(got, []string{"$t2", "$a1", "$x", "$r1", "$e1", "$t1"}) {
				t.Fatalf("recursive: %v", got)
			}
			rq.RelType = "m.annotation"
			if got := page(rq); !slices.Equal(got, []string{"$a1", "$x"}) {
				t.Fatalf("recursive annotations: %v", got)
			}
			// Threads, latest activity first; by participant; before a position.
			threads := func(before stream.Pos, participant string) []string {
				t.Helper()
				ths, err := s.Threads(ctx, room, before, participant, 10)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, th := range ths {
					out = append(out, th.RootID+"@"+th.LatestID)
				}
				return out
			}
			if got := threads(top+1, ""); !slices.Equal(got, []string{"$root@$t2", "$other@$o1"}) {
				t.Fatalf("threads: %v", got)
			}
			if got := threads(pos["$t2"], ""); !slices.Equal(got, []string{"$other@$o1"}) {
				t.Fatalf("threads before $t2: %v", got)
			}
			if got := threads(top+1, "@a:hs"); !slices.Equal(got, []string{"$root@$t2"}) {
				t.Fatalf("threads of the root's sender: %v", got)
			}
			if got := threads(top+1, "@b:hs"); !slices.Equal(got, []string{"$root@$t2", "$other@$o1"}) {
				t.Fatalf("threads @b replied to or started: %v", got)
			}
			if got := threads(top+1, "@d:hs"); len(got) != 0 {
				t.Fatalf("threads of a stranger: %v", got)
			}
			// Redacting the latest reply moves the thread back; the last one ends it.
			write(func(tx storage.Tx) error { return tx.DeleteRelation(ctx, "$t2") })
			if got := threads(top+1, ""); !slices.Equal(got, []string{"$other@$o1", "$root@$t1"}) {
				t.Fatalf("after redacting $t2: %v", got)
			}
			write(func(tx storage.Tx) error { return tx.DeleteRelation(ctx, "$t1") })
			if got := threads(top+1, ""); !slices.Equal(got, []string{"$other@$o1"}) {
				t.Fatalf("after redacting $t1: %v", got)
			}
			if err := s.Write(ctx, func(tx storage.Tx) error { return tx.DeleteRelation(ctx, "$root") }); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("deleting a relation that is not there: %v", err)
			}
			if got := page(q); !slices.Equal(got, []string{"$x", "$e1"}) {
				t.Fatalf("children after the redactions: %v", got)
			}
		})
	}
}

// The migration that adds the relations tables fills them from the events stored before
// it: relations out of the PDUs, and each thread's latest reply.
func TestRelationsMigrationBackfill(t *testing.T) {
	ctx := context.Background()
	version := relationsMigration(t)
	for name, dsn := range map[string]string{"sqlite": "sqlite://" + t.TempDir() + "/b.db", "postgres": hstest.PostgresDSN()} {
		if dsn == "" {
			continue
		}
		if name == "postgres" {
			dsn = hstest.FreshDatabase(t, "")
		}
		t.Run(name, func(t *testing.T) {
			s, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Write(ctx, func(tx storage.Tx) error {
				p, _ := tx.NextPos(ctx)
				if err := tx.CreateRoom(ctx, storage.Room{ID: "!b:hs", Version: "11", Creator: "@a:hs", CreatedPos: p}); err != nil {
					return err
				}
				for i, pdu := range []string{
					`{"content":{"body":"root"}}`,
					`{"content":{"body":"1","m.relates_to":{"rel_type":"m.thread","event_id":"$e0"}}}`,
					`{"content":{"body":"2","m.relates_to":{"rel_type":"m.thread","event_id":"$e0"}}}`,
					`{"content":{"m.new_content":{"body":"x"},"m.relates_to":{"rel_type":"m.replace","event_id":"$e0"}}}`,
					`{"content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e0","key":"k"}}}`,
					`{"content":{"m.relates_to":{"m.in_reply_to":{"event_id":"$e0"}}}}`,
					`{"content":{"m.relates_to":"$e0"}}`,
				} {
					p, _ := tx.NextPos(ctx)
					if err := tx.InsertEvent(ctx, &storage.Event{Pos: p, ID: "$e" + strconv.Itoa(i), RoomID: "!b:hs", Type: "m.room.message", Sender: "@a:hs",
						Depth: int64(i + 1), OriginTS: int64(i), PDU: []byte(pdu), Visibility: "joined"}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			// Undo the migration, as if the events had been stored before it.
			driver, source := "pgx", dsn
			if name == "sqlite" {
				driver, source = "sqlite3", strings.TrimPrefix(dsn, "sqlite://")
			}
			db, err := sql.Open(driver, source)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"DROP TABLE threads", "DROP TABLE event_relations"} {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			// Run the relations migration again by itself (later migrations stay applied).
			for _, q := range migrationStatements(t, version, name) {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			s, err = sqlstore.Open(ctx, dsn, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rs, err := s.Relations(ctx, storage.RelationQuery{RoomID: "!b:hs", Parent: "$e0", UpTo: 1 << 40, Limit: 10, Forward: true})
			if got := relIDs(rs); err != nil || !slices.Equal(got, []string{"$e1", "$e2", "$e3", "$e4"}) {
				t.Fatalf("backfilled relations: %v %v", got, err)
			}
			if !rs[2].NewContent || rs[1].NewContent || rs[3].Key != "k" || rs[0].Key != "" || rs[0].Visibility != "joined" || rs[0].RelType != "m.thread" {
				t.Fatalf("backfilled fields: %+v", rs)
			}
			ths, err := s.Threads(ctx, "!b:hs", 1<<40, "", 10)
			if err != nil || len(ths) != 1 || ths[0].RootID != "$e0" || ths[0].LatestID != "$e2" {
				t.Fatalf("backfilled threads: %+v %v", ths, err)
			}
		})
	}
}

// relationsMigration finds the version number of the migration that adds event_relations.
// migrationStatements reads the statements of migration version for an engine ("sqlite" or
// "postgres") from its file, as the migrator splits them.
func migrationStatements(t *testing.T, version int, engine string) []string {
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%04d_", version)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || (strings.Count(name, ".") == 2 && !strings.HasSuffix(name, "."+engine+".sql")) {
			continue
		}
		raw, err := os.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		var cur strings.Builder
		for _, line := range strings.Split(string(raw), "\n") {
			if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "--") {
				continue
			}
			cur.WriteString(line + "\n")
			if strings.HasSuffix(strings.TrimSpace(line), ";") {
				out = append(out, cur.String())
				cur.Reset()
			}
		}
		return out
	}
	t.Fatalf("no migration %d for %s", version, engine)
	return nil
}

func relationsMigration(t *testing.T) int {
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if num, rest, ok := strings.Cut(e.Name(), "_"); ok && strings.HasPrefix(rest, "relations.") {
			v, err := strconv.Atoi(num)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatal("no relations migration")
	return 0
}

// The search migration indexes the events stored before it.
func TestSearchMigrationBackfill(t *testing.T) {
	ctx := context.Background()
	version := migrationNumber(t, "search")
	for name, dsn := range map[string]string{"sqlite": "sqlite://" + t.TempDir() + "/b.db", "postgres": hstest.PostgresDSN()} {
		if dsn == "" {
			continue
		}
		if name == "postgres" {
			dsn = hstest.FreshDatabase(t, "")
		}
		t.Run(name, func(t *testing.T) {
			s, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Write(ctx, func(tx storage.Tx) error {
				p, _ := tx.NextPos(ctx)
				if err := tx.CreateRoom(ctx, storage.Room{ID: "!b:hs", Version: "11", Creator: "@a:hs", CreatedPos: p}); err != nil {
					return err
				}
				if err := tx.SetMember(ctx, storage.Member{RoomID: "!b:hs", UserID: "@a:hs", Membership: "join", EventID: "$j", Pos: p}); err != nil {
					return err
				}
				for i, c := range []struct{ typ, content string }{
					{"m.room.message", `{"body":"ancient words"}`}, {"m.room.name", `{"name":"ancient room"}`},
					{"m.room.topic", `{"topic":"ancient topic"}`}, {"m.room.message", `{"body":["ancient"]}`},
				} {
					p, _ := tx.NextPos(ctx)
					if err := tx.InsertEvent(ctx, &storage.Event{Pos: p, ID: "$e" + strconv.Itoa(i), RoomID: "!b:hs", Type: c.typ, Sender: "@a:hs",
						Depth: int64(i + 1), PDU: []byte(`{"content":` + c.content + `}`), Visibility: "shared"}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			driver, source := "pgx", dsn
			if name == "sqlite" {
				driver, source = "sqlite3", strings.TrimPrefix(dsn, "sqlite://")
			}
			db, err := sql.Open(driver, source)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("DROP TABLE event_search"); err != nil {
				t.Fatal(err)
			}
			for _, q := range migrationStatements(t, version, name) {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			s, err = sqlstore.Open(ctx, dsn, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			hits, err := s.SearchEvents(ctx, storage.SearchQuery{Words: []string{"ancient"}, Member: "@a:hs",
				Types: []string{"m.room.message", "m.room.name", "m.room.topic"}, Limit: 10})
			if err != nil || len(hits) != 3 {
				t.Fatalf("backfilled index: %v %v", hits, err)
			}
		})
	}
}

// migrationNumber finds the number of the migration with this name.
func migrationNumber(t *testing.T, name string) int {
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if num, rest, ok := strings.Cut(e.Name(), "_"); ok && (strings.HasPrefix(rest, name+".")) {
			v, err := strconv.Atoi(num)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s migration", name)
	return 0
}
