package rooms

import (
	"context"
	"encoding/json/jsontext"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/live"
	"porthole/internal/notify"
	"porthole/internal/storage"
	"porthole/internal/storage/sqlstore"
	"porthole/internal/stream"
)

// newTestService returns a rooms service on a fresh SQLite database.
func newTestService(tb testing.TB) (*Service, storage.Store) {
	tb.Helper()
	dir := tb.TempDir()
	store, err := sqlstore.Open(context.Background(), "sqlite://"+dir+"/p.db", sqlstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	key, err := LoadOrCreateKey(dir + "/signing.key")
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := live.NewHub(store, stream.NewNotifier(0), 512, log)
	return New(hub, store, Config{ServerName: "bench", DefaultVersion: "10", Key: key}, log), store
}

func createUser(tb testing.TB, store storage.Store, userID string) *auth.Session {
	tb.Helper()
	err := store.Write(context.Background(), func(tx storage.Tx) error {
		return tx.CreateUser(context.Background(), storage.User{ID: userID})
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &auth.Session{UserID: userID, DeviceID: "DEV"}
}

// BenchmarkSignAndAuthorize is building an event: content hash, reference hash (event ID),
// ed25519 signature, and the room version's auth rules against its auth events.
func BenchmarkSignAndAuthorize(b *testing.B) {
	for _, version := range []id.RoomVersion{"10", "12"} {
		b.Run("v"+string(version), func(b *testing.B) {
			s, store := newTestService(b)
			sess := createUser(b, store, "@u:bench")
			roomID, err := s.CreateRoom(context.Background(), sess, CreateRoomRequest{Preset: "public_chat", RoomVersion: string(version)})
			if err != nil {
				b.Fatal(err)
			}
			room, _ := store.Room(context.Background(), roomID)
			state, _ := store.CurrentState(context.Background(), roomID)
			authPDUs := map[id.EventID]*pdu.PDU{}
			var authIDs []id.EventID
			for i := range state {
				switch state[i].Type {
				case "m.room.create", "m.room.power_levels", "m.room.member":
					p, _ := parsePDU(version, state[i].PDU)
					authPDUs[id.EventID(state[i].ID)] = p
					authIDs = append(authIDs, id.EventID(state[i].ID))
				}
			}
			if version == "12" {
				authIDs = authIDs[1:] // v12 events do not list the create event
			}
			lookup := func(eid id.EventID) (*pdu.PDU, error) {
				ev, err := store.EventByID(context.Background(), string(eid))
				if err != nil {
					return nil, nil
				}
				return parsePDU(version, ev.PDU)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ev := &pdu.PDU{Type: "m.room.message", Sender: "@u:bench", RoomID: id.RoomID(roomID), Depth: room.Depth + 1,
					OriginServerTS: int64(i), PrevEvents: []id.EventID{id.EventID(room.HeadEventID)}, AuthEvents: authIDs,
					Content: jsontext.Value(fmt.Sprintf(`{"body":"m%d","msgtype":"m.text"}`, i))}
				if _, _, err := s.signAndAuthorize(version, ev, authPDUs, lookup, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPersistEvent is one client send end to end below HTTP: build, authorize, store
// in one SQLite transaction, publish.
func BenchmarkPersistEvent(b *testing.B) {
	s, store := newTestService(b)
	sess := createUser(b, store, "@u:bench")
	roomID, err := s.CreateRoom(context.Background(), sess, CreateRoomRequest{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Send(context.Background(), sess, roomID, "m.room.message", fmt.Sprintf("t%d", i), jsontext.Value(`{"body":"hello","msgtype":"m.text"}`)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendLargeRoom is a send to a room of 1,000 local members, each of whom is idle
// with the default push rules: without push evaluation (what a send cost before it) and
// with it (every member's rules evaluated, the outcome stored, in the event's
// transaction). The difference is push evaluation's cost per event; divided by 999 it is
// the cost per event per member.
func BenchmarkSendLargeRoom(b *testing.B) {
	for _, withPush := range []bool{false, true} {
		name := "without_push"
		if withPush {
			name = "with_push"
		}
		b.Run(name, func(b *testing.B) {
			s, store := newTestService(b)
			if withPush {
				n, err := notify.New(store, s.hub, notify.Config{ServerName: "bench"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					b.Fatal(err)
				}
				s.SetPushEvaluator(n)
			}
			ctx := context.Background()
			sess := createUser(b, store, "@u:bench")
			roomID, err := s.CreateRoom(ctx, sess, CreateRoomRequest{Preset: "public_chat"})
			if err != nil {
				b.Fatal(err)
			}
			for i := range 999 {
				m := createUser(b, store, fmt.Sprintf("@m%d:bench", i))
				if _, err := s.Join(ctx, m, roomID, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Send(ctx, sess, roomID, "m.room.message", fmt.Sprintf("t%d", i), jsontext.Value(`{"body":"hello everyone","msgtype":"m.text"}`)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
