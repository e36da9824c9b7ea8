package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"porthole/internal/hstest"
	"porthole/internal/storage"
	"porthole/internal/storage/sqlstore"
	"porthole/internal/stream"
)

// engines returns a fresh store on SQLite, and on PostgreSQL when PORTHOLE_TEST_POSTGRES
// is set: the same conformance checks run on both.
func engines(t *testing.T) map[string]storage.Store {
	out := map[string]storage.Store{}
	open := func(name, dsn string) {
		s, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { s.Close() })
		out[name] = s
	}
	dir := t.TempDir()
	open("sqlite", "sqlite://"+dir+"/c.db")
	if hstest.PostgresDSN() != "" {
		open("postgres", hstest.FreshDatabase(t, ""))
	} else if os.Getenv("CI") == "true" && os.Getenv("PORTHOLE_TEST_POSTGRES_LATER") == "" {
		t.Fatal("CI must run the conformance suite on PostgreSQL too: set PORTHOLE_TEST_POSTGRES")
	}
	return out
}

func strp(s string) *string { return &s }

func TestConformance(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			write := func(fn func(tx storage.Tx) error) {
				t.Helper()
				if err := s.Write(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			// Not found is ErrNotFound, never nil; unique records conflict.
			if _, err := s.User(ctx, "@nobody:hs"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("missing user: %v", err)
			}
			write(func(tx storage.Tx) error { return tx.CreateUser(ctx, storage.User{ID: "@a:hs", CreatedTS: 1}) })
			err := s.Write(ctx, func(tx storage.Tx) error { return tx.CreateUser(ctx, storage.User{ID: "@a:hs", CreatedTS: 1}) })
			if !errors.Is(err, storage.ErrConflict) {
				t.Fatalf("duplicate user: %v", err)
			}
			// A failed transaction leaves nothing behind, positions included.
			before, _ := s.MaxPos(ctx)
			boom := errors.New("boom")
			err = s.Write(ctx, func(tx storage.Tx) error {
				tx.NextPos(ctx)
				tx.CreateUser(ctx, storage.User{ID: "@b:hs", CreatedTS: 1})
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatal(err)
			}
			if after, _ := s.MaxPos(ctx); after != before {
				t.Fatalf("rolled-back position visible: %d -> %d", before, after)
			}
			if _, err := s.User(ctx, "@b:hs"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatal("rolled-back user visible")
			}
			// Positions increase by one per taker.
			var p1, p2 stream.Pos
			write(func(tx storage.Tx) error {
				if err := tx.LockStream(ctx); err != nil {
					return err
				}
				p1, _ = tx.NextPos(ctx)
				p2, _ = tx.NextPos(ctx)
				return tx.Notify(ctx, "porthole_test", "x")
			})
			if p2 != p1+1 || p1 != before+1 {
				t.Fatalf("positions %d %d after %d", p1, p2, before)
			}
			// Rooms, events, state at a position and current state.
			room := storage.Room{ID: "!r:hs", Version: "10", Creator: "@a:hs", CreatedPos: p1}
			var evPos [4]stream.Pos
			write(func(tx storage.Tx) error {
				if err := tx.CreateRoom(ctx, room); err != nil {
					return err
				}
				for i, topic := range []string{"one", "two", "three"} {
					pos, _ := tx.NextPos(ctx)
					evPos[i] = pos
					e := &storage.Event{Pos: pos, ID: "$t" + topic, RoomID: room.ID, Type: "m.room.topic", StateKey: strp(""), Sender: "@a:hs",
						Depth: int64(i + 1), OriginTS: 1, PDU: []byte(`{"content":{"topic":"` + topic + `"}}`), Visibility: "shared"}
					if err := tx.InsertEvent(ctx, e); err != nil {
						return err
					}
					if err := tx.SetCurrentState(ctx, room.ID, "m.room.topic", "", e.ID, pos); err != nil {
						return err
					}
				}
				pos, _ := tx.NextPos(ctx)
				evPos[3] = pos
				return tx.InsertEvent(ctx, &storage.Event{Pos: pos, ID: "$msg", RoomID: room.ID, Type: "m.room.message", Sender: "@a:hs",
					Depth: 4, OriginTS: 1, PDU: []byte(`{"content":{"body":"hi"}}`), Visibility: "shared", TxnID: "t1", TxnDevice: "D"})
			})
			cur, err := s.CurrentState(ctx, room.ID, storage.StateKeyOf{Type: "m.room.topic"}, storage.StateKeyOf{Type: "m.room.name"})
			if err != nil || len(cur) != 1 || cur[0].ID != "$tthree" {
				t.Fatalf("current state: %v %v", cur, err)
			}
			at, err := s.StateAt(ctx, room.ID, evPos[1], storage.StateKeyOf{Type: "m.room.topic"})
			if err != nil || len(at) != 1 || at[0].ID != "$ttwo" {
				t.Fatalf("state at: %v %v", at, err)
			}
			all, err := s.StateAt(ctx, room.ID, evPos[0])
			if err != nil || len(all) != 1 || all[0].ID != "$tone" {
				t.Fatalf("full state at: %v %v", all, err)
			}
			changes, err := s.StateChanges(ctx, room.ID, evPos[0], evPos[3])
			if err != nil || len(changes) != 1 || changes[0].ID != "$tthree" {
				t.Fatalf("state changes: %v %v", changes, err)
			}
			fwd, _ := s.RoomEvents(ctx, room.ID, evPos[0], evPos[3], true, 10)
			back, _ := s.RoomEvents(ctx, room.ID, evPos[3], evPos[0], false, 2)
			if len(fwd) != 3 || fwd[0].ID != "$ttwo" || len(back) != 2 || back[0].ID != "$msg" || back[1].ID != "$tthree" {
				t.Fatalf("room events: %v / %v", fwd, back)
			}
			if e, err := s.EventByID(ctx, "$msg"); err != nil || e.TxnID != "t1" || e.TxnDevice != "D" || e.StateKey != nil {
				t.Fatalf("event: %+v %v", e, err)
			}
			// Everything in a range, as a catching-up node reads it.
			var rcpt, ad stream.Pos
			write(func(tx storage.Tx) error {
				rcpt, _ = tx.NextPos(ctx)
				if err := tx.PutReceipt(ctx, storage.Receipt{Pos: rcpt, RoomID: room.ID, Type: "m.read", UserID: "@a:hs", EventID: "$msg", EventPos: evPos[3], TS: 5}); err != nil {
					return err
				}
				ad, _ = tx.NextPos(ctx)
				if err := tx.PutAccountData(ctx, storage.AccountData{UserID: "@a:hs", Type: "x", Content: []byte(`{}`), Pos: ad}); err != nil {
					return err
				}
				tp, _ := tx.NextPos(ctx)
				if err := tx.PutTyping(ctx, storage.Typing{RoomID: room.ID, Pos: tp, UserIDs: []string{"@a:hs"}}); err != nil {
					return err
				}
				pp, _ := tx.NextPos(ctx)
				return tx.PutPresence(ctx, storage.Presence{UserID: "@a:hs", State: "online", LastActiveTS: 9, Pos: pp})
			})
			batch, err := s.StreamRange(ctx, evPos[2], rcpt+3)
			if err != nil || len(batch.Events) != 1 || len(batch.Receipts) != 1 || batch.Receipts[0].EventPos != evPos[3] ||
				len(batch.AccountData) != 1 || len(batch.Typing) != 1 || batch.Typing[0].UserIDs[0] != "@a:hs" || len(batch.Presence) != 1 {
				t.Fatalf("stream range: %+v %v", batch, err)
			}
			// UIA sessions keep their whole record.
			write(func(tx storage.Tx) error {
				return tx.PutUIASession(ctx, "sess", storage.UIASession{Op: "register", Completed: []string{"m.login.dummy"}, Params: []byte(`{"a":1}`), Result: "@a:hs"})
			})
			if u, err := s.UIASession(ctx, "sess"); err != nil || u.Op != "register" || u.Result != "@a:hs" || string(u.Params) != `{"a":1}` || len(u.Completed) != 1 {
				t.Fatalf("uia: %+v %v", u, err)
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		s, err := sqlstore.Open(context.Background(), "sqlite://"+dir+"/m.db", sqlstore.Options{})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
	// A database written by a newer Porthole is refused, not half-used.
	db, err := sql.Open("sqlite3", dir+"/m.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_ts) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlstore.Open(context.Background(), "sqlite://"+dir+"/m.db", sqlstore.Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema accepted: %v", err)
	}
}

// Variable-length lists longer than an engine's parameter limit (SQLite: 32,766) are
// split over several queries, and their results merged in order.
func TestLongINLists(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ids := make([]string, 40000)
			for i := range ids {
				ids[i] = "$missing" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i)
			}
			if evs, err := s.EventsByIDs(ctx, ids); err != nil || len(evs) != 0 {
				t.Fatalf("EventsByIDs with 40,000 IDs: %d, %v", len(evs), err)
			}
			users := make([]string, 40000)
			for i := range users {
				users[i] = "@u" + itoa(i) + ":hs"
			}
			if _, err := s.PresenceFor(ctx, users, 0, 100); err != nil {
				t.Fatalf("PresenceFor with 40,000 users: %v", err)
			}
			if _, err := s.ReceiptsForRooms(ctx, ids, 0, 100); err != nil {
				t.Fatalf("ReceiptsForRooms with 40,000 rooms: %v", err)
			}
			err := s.Write(ctx, func(tx storage.Tx) error {
				if err := tx.CreateUser(ctx, storage.User{ID: "@d:hs", CreatedTS: 1}); err != nil {
					return err
				}
				for _, d := range []string{"KEEP", "GONE1", "GONE2"} {
					if err := tx.CreateDevice(ctx, storage.Device{UserID: "@d:hs", ID: d, CreatedTS: 1}); err != nil {
						return err
					}
				}
				gone, err := tx.DeleteDevices(ctx, "@d:hs", append(ids, "GONE1", "GONE2"), "")
				if err != nil || len(gone) != 2 {
					t.Errorf("DeleteDevices with 40,002 IDs: %v, %v", gone, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if ds, _ := s.Devices(ctx, "@d:hs"); len(ds) != 1 || ds[0].ID != "KEEP" {
				t.Fatalf("devices left: %v", ds)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Admins, client connections, OpenID tokens and reports behave alike on both engines.
func TestConformanceAdmin(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			write := func(fn func(tx storage.Tx) error) {
				t.Helper()
				if err := s.Write(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			write(func(tx storage.Tx) error {
				if err := tx.CreateUser(ctx, storage.User{ID: "@root:hs", CreatedTS: 1, Admin: true}); err != nil {
					return err
				}
				if err := tx.CreateUser(ctx, storage.User{ID: "@u:hs", CreatedTS: 1}); err != nil {
					return err
				}
				return tx.CreateDevice(ctx, storage.Device{UserID: "@u:hs", ID: "D", CreatedTS: 1, LastSeenTS: 1})
			})
			if u, _ := s.User(ctx, "@root:hs"); !u.Admin {
				t.Fatal("admin flag lost")
			}
			write(func(tx storage.Tx) error { return tx.SetAdmin(ctx, "@u:hs", true) })
			if u, _ := s.User(ctx, "@u:hs"); !u.Admin {
				t.Fatal("SetAdmin")
			}
			if err := s.Write(ctx, func(tx storage.Tx) error { return tx.SetAdmin(ctx, "@ghost:hs", true) }); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("SetAdmin of nobody: %v", err)
			}

			// Connections keep their latest time; the device follows the latest.
			write(func(tx storage.Tx) error {
				return tx.PutClientIPs(ctx, []storage.ClientIP{{UserID: "@u:hs", DeviceID: "D", IP: "10.0.0.1", UserAgent: "a", LastSeen: 100},
					{UserID: "@u:hs", DeviceID: "D", IP: "10.0.0.2", UserAgent: "a", LastSeen: 50}})
			})
			write(func(tx storage.Tx) error {
				return tx.PutClientIPs(ctx, []storage.ClientIP{{UserID: "@u:hs", DeviceID: "D", IP: "10.0.0.1", UserAgent: "a", LastSeen: 90}})
			})
			ips, err := s.ClientIPs(ctx, "@u:hs")
			if err != nil || len(ips) != 2 || ips[0].IP != "10.0.0.1" || ips[0].LastSeen != 100 || ips[1].LastSeen != 50 {
				t.Fatalf("client IPs: %+v %v", ips, err)
			}
			if d, _ := s.Device(ctx, "@u:hs", "D"); d.LastSeenTS != 100 || d.LastSeenIP != "10.0.0.1" {
				t.Fatalf("device last seen: %+v", d)
			}
			write(func(tx storage.Tx) error { return tx.PruneClientIPs(ctx, 60) })
			if ips, _ := s.ClientIPs(ctx, "@u:hs"); len(ips) != 1 {
				t.Fatalf("after pruning: %+v", ips)
			}
			write(func(tx storage.Tx) error { _, err := tx.DeleteDevices(ctx, "@u:hs", []string{"D"}, ""); return err })
			if ips, _ := s.ClientIPs(ctx, "@u:hs"); len(ips) != 0 {
				t.Fatalf("a deleted device's connections: %+v", ips)
			}

			// OpenID tokens expire, and expired ones are removed by the next insert.
			write(func(tx storage.Tx) error { return tx.PutOpenIDToken(ctx, "h1", "@u:hs", 1000, 0) })
			if who, err := s.OpenIDToken(ctx, "h1", 999); err != nil || who != "@u:hs" {
				t.Fatalf("openid: %q %v", who, err)
			}
			if _, err := s.OpenIDToken(ctx, "h1", 1000); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("expired openid token: %v", err)
			}
			write(func(tx storage.Tx) error { return tx.PutOpenIDToken(ctx, "h2", "@u:hs", 5000, 2000) })
			if _, err := s.OpenIDToken(ctx, "h1", 0); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("expired token kept: %v", err)
			}

			var ids []int64
			write(func(tx storage.Tx) error {
				for _, r := range []storage.Report{{Kind: storage.ReportEvent, Reporter: "@u:hs", RoomID: "!r:hs", EventID: "$e", Reason: "x", Content: []byte(`{"reason":"x"}`), ReceivedTS: 5},
					{Kind: storage.ReportUser, Reporter: "@u:hs", TargetUser: "@root:hs", ReceivedTS: 6}} {
					id, err := tx.PutReport(ctx, r)
					if err != nil {
						return err
					}
					ids = append(ids, id)
				}
				return nil
			})
			reps, err := s.Reports(ctx, 10)
			if err != nil || len(reps) != 2 || reps[0].ID != ids[1] || reps[0].TargetUser != "@root:hs" || string(reps[0].Content) != "{}" ||
				reps[1].EventID != "$e" || string(reps[1].Content) != `{"reason":"x"}` || ids[1] != ids[0]+1 {
				t.Fatalf("reports: %+v %v %v", reps, ids, err)
			}
		})
	}
}

// The user directory follows profiles, deactivations and remote users' member events.
func TestConformanceUserDirectory(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			write := func(fn func(tx storage.Tx) error) {
				t.Helper()
				if err := s.Write(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			find := func(words ...string) []string {
				t.Helper()
				es, err := s.SearchUserDirectory(ctx, storage.DirectoryQuery{Searcher: "@me:hs", Words: words, AllUsers: true, Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, e := range es {
					ids = append(ids, e.UserID)
				}
				return ids
			}
			write(func(tx storage.Tx) error {
				if err := tx.CreateUser(ctx, storage.User{ID: "@ann:hs", DisplayName: strp("Ann Ü"), CreatedTS: 1}); err != nil {
					return err
				}
				return tx.CreateUser(ctx, storage.User{ID: "@me:hs", DisplayName: strp("Ann Me"), CreatedTS: 1})
			})
			if got := find("ann"); len(got) != 1 || got[0] != "@ann:hs" {
				t.Fatalf("by name: %v", got)
			}
			if got := find("ü", "an"); len(got) != 1 {
				t.Fatalf("non-ASCII prefix: %v", got)
			}
			write(func(tx storage.Tx) error { return tx.SetProfile(ctx, "@ann:hs", strp("Zed"), nil) })
			if got := find("ann"); len(got) != 1 { // the localpart still matches
				t.Fatalf("after rename, by localpart: %v", got)
			}
			if got := find("ü"); len(got) != 0 {
				t.Fatalf("old name still found: %v", got)
			}
			// A remote user's joined member event makes their entry; a local user's does not
			// replace their profile.
			write(func(tx storage.Tx) error {
				p, _ := tx.NextPos(ctx)
				if err := tx.CreateRoom(ctx, storage.Room{ID: "!d:hs", Version: "10", Creator: "@ann:hs", CreatedPos: p}); err != nil {
					return err
				}
				for i, m := range []struct{ user, pdu string }{
					{"@far:remote.example", `{"content":{"membership":"join","displayname":"Faraway Friend"}}`},
					{"@ann:hs", `{"content":{"membership":"join","displayname":"Not Zed"}}`},
				} {
					p, _ := tx.NextPos(ctx)
					sk := m.user
					if err := tx.InsertEvent(ctx, &storage.Event{Pos: p, ID: "$m" + strconv.Itoa(i), RoomID: "!d:hs", Type: "m.room.member", StateKey: &sk,
						Sender: m.user, Depth: int64(i + 1), PDU: []byte(m.pdu), Visibility: "shared", Membership: "join"}); err != nil {
						return err
					}
				}
				return nil
			})
			if got := find("faraway"); len(got) != 1 || got[0] != "@far:remote.example" {
				t.Fatalf("remote member: %v", got)
			}
			if got := find("not"); len(got) != 0 {
				t.Fatalf("a local user's member event replaced the profile: %v", got)
			}
			write(func(tx storage.Tx) error { return tx.Deactivate(ctx, "@ann:hs") })
			if got := find("zed"); len(got) != 0 {
				t.Fatalf("deactivated user found: %v", got)
			}
			if got := find("ann"); len(got) != 0 { // the searcher is left out
				t.Fatalf("searcher found: %v", got)
			}
		})
	}
}

// Full-text search finds what each engine's index holds, in both orders, limited to the
// member's rooms, and forgets redacted events.
func TestConformanceSearch(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			write := func(fn func(tx storage.Tx) error) {
				t.Helper()
				if err := s.Write(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			var ids []string
			write(func(tx storage.Tx) error {
				for _, room := range []string{"!s1:hs", "!s2:hs"} {
					p, _ := tx.NextPos(ctx)
					if err := tx.CreateRoom(ctx, storage.Room{ID: room, Version: "10", Creator: "@a:hs", CreatedPos: p}); err != nil {
						return err
					}
					if err := tx.SetMember(ctx, storage.Member{RoomID: room, UserID: "@a:hs", Membership: "join", EventID: "$j" + room, Pos: p}); err != nil {
						return err
					}
				}
				for i, ev := range []struct{ room, typ, content string }{
					{"!s1:hs", "m.room.message", `{"body":"the quick brown fox","msgtype":"m.text"}`},
					{"!s1:hs", "m.room.message", `{"body":"Quick quick QUICK","msgtype":"m.text"}`},
					{"!s1:hs", "m.room.topic", `{"topic":"foxes and quickness"}`},
					{"!s1:hs", "m.room.message", `{"body":5}`},
					{"!s2:hs", "m.room.message", `{"body":"quick elsewhere","msgtype":"m.text"}`},
					{"!s1:hs", "m.room.member", `{"displayname":"quick member","membership":"join"}`},
				} {
					p, _ := tx.NextPos(ctx)
					id := "$q" + strconv.Itoa(i)
					ids = append(ids, id)
					e := &storage.Event{Pos: p, ID: id, RoomID: ev.room, Type: ev.typ, Sender: "@a:hs", Depth: int64(i + 1), OriginTS: int64(i),
						PDU: []byte(`{"content":` + ev.content + `}`), Visibility: "shared"}
					if ev.typ != "m.room.message" {
						sk := ""
						e.StateKey = &sk
					}
					if err := tx.InsertEvent(ctx, e); err != nil {
						return err
					}
				}
				return nil
			})
			search := func(q storage.SearchQuery) []string {
				t.Helper()
				if q.Member == "" {
					q.Member = "@a:hs"
				}
				if q.Types == nil {
					q.Types = []string{"m.room.message", "m.room.topic", "m.room.name"}
				}
				if q.Limit == 0 {
					q.Limit = 10
				}
				hits, err := s.SearchEvents(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, h := range hits {
					out = append(out, h.ID)
				}
				return out
			}
			eq := func(got []string, want ...string) {
				t.Helper()
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
			eq(search(storage.SearchQuery{Words: []string{"quick"}}), ids[4], ids[2], ids[1], ids[0])
			eq(search(storage.SearchQuery{Words: []string{"quick"}, Before: mustPos(t, s, ids[2])}), ids[1], ids[0])
			eq(search(storage.SearchQuery{Words: []string{"qui", "fox"}}), ids[2], ids[0])
			eq(search(storage.SearchQuery{Words: []string{"quick"}, Types: []string{"m.room.topic"}}), ids[2])
			eq(search(storage.SearchQuery{Words: []string{"quick"}, RoomIDs: []string{"!s2:hs"}}), ids[4])
			eq(search(storage.SearchQuery{Words: []string{"quick"}, Member: "@nobody:hs"}))
			eq(search(storage.SearchQuery{Words: []string{"nothing"}}))
			// By rank, the message saying quick three times comes first; offsets page.
			byRank := search(storage.SearchQuery{Words: []string{"quick"}, ByRank: true})
			if len(byRank) != 4 || byRank[0] != ids[1] {
				t.Fatalf("by rank: %v", byRank)
			}
			eq(search(storage.SearchQuery{Words: []string{"quick"}, ByRank: true, Offset: 1, Limit: 2}), byRank[1:3]...)
			if n, err := s.CountSearch(ctx, storage.SearchQuery{Words: []string{"quick"}, Member: "@a:hs", Types: []string{"m.room.message"}}); err != nil || n != 3 {
				t.Fatalf("count: %d %v", n, err)
			}
			write(func(tx storage.Tx) error { return tx.Redact(ctx, ids[1], []byte(`{"content":{}}`), []byte(`{}`)) })
			eq(search(storage.SearchQuery{Words: []string{"quick"}, RoomIDs: []string{"!s1:hs"}}), ids[2], ids[0])
		})
	}
}

func mustPos(t *testing.T, s storage.Store, id string) stream.Pos {
	e, err := s.EventByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e.Pos
}
