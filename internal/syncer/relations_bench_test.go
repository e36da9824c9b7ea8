package syncer

import (
	"context"
	"encoding/json/jsontext"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/tidwall/gjson"

	"porthole/internal/auth"
	"porthole/internal/live"
	"porthole/internal/rooms"
	"porthole/internal/storage"
	"porthole/internal/storage/sqlstore"
	"porthole/internal/stream"
)

// peekRoom is a world-readable room whose recent window holds a root with a thread of
// replies (each edited once) and references, with the syncer that serves it; the
// database is closed before it is returned, so any storage read fails.
func peekRoom(tb testing.TB, replies int, threaded bool) (*Syncer, string, stream.Pos) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	store, err := sqlstore.Open(ctx, "sqlite://"+dir+"/p.db", sqlstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	key, err := rooms.LoadOrCreateKey(dir + "/signing.key")
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := live.NewHub(store, stream.NewNotifier(0), 512, log)
	rs := rooms.New(hub, store, rooms.Config{ServerName: "bench", DefaultVersion: "11", Key: key}, log)
	if err := store.Write(ctx, func(tx storage.Tx) error { return tx.CreateUser(ctx, storage.User{ID: "@u:bench"}) }); err != nil {
		tb.Fatal(err)
	}
	sess := &auth.Session{UserID: "@u:bench", DeviceID: "DEV"}
	roomID, err := rs.CreateRoom(ctx, sess, rooms.CreateRoomRequest{Preset: "public_chat", InitialState: []rooms.InitialStateEvent{
		{Type: "m.room.history_visibility", Content: jsontext.Value(`{"history_visibility":"world_readable"}`)}}})
	if err != nil {
		tb.Fatal(err)
	}
	hub.Room(ctx, roomID) // in memory from here on
	before := hub.Notifier().Current()
	send := func(content string) string {
		tb.Helper()
		id, err := rs.Send(ctx, sess, roomID, "m.room.message", fmt.Sprintf("t%d", hub.Notifier().Current()), jsontext.Value(content))
		if err != nil {
			tb.Fatal(err)
		}
		return id
	}
	root := send(`{"msgtype":"m.text","body":"root"}`)
	for i := range replies {
		if !threaded {
			send(`{"msgtype":"m.text","body":"plain"}`)
			send(`{"msgtype":"m.text","body":"plain"}`)
			continue
		}
		r := send(fmt.Sprintf(`{"msgtype":"m.text","body":"reply %d","m.relates_to":{"rel_type":"m.thread","event_id":%q}}`, i, root))
		send(fmt.Sprintf(`{"msgtype":"m.text","body":"* edited","m.new_content":{"msgtype":"m.text","body":"edited"},"m.relates_to":{"rel_type":"m.replace","event_id":%q}}`, r))
	}
	if threaded {
		send(fmt.Sprintf(`{"msgtype":"m.text","body":"see","m.relates_to":{"rel_type":"m.reference","event_id":%q}}`, root))
	}
	sy := New(hub, store, Config{}, log)
	store.Close()
	return sy, roomID, before
}

// A peeker's /events read from the room's window carries the root's aggregations without
// a single storage read: the database behind it is closed.
func TestWindowAggregationsReadNoStorage(t *testing.T) {
	sy, roomID, before := peekRoom(t, 20, true)
	guest := &auth.Session{UserID: "@guest:bench", DeviceID: "G", IsGuest: true}
	body, err := sy.Events(context.Background(), guest, EventsRequest{RoomID: roomID, From: &before, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	root := gjson.GetBytes(body, "chunk.0")
	th := root.Get(`unsigned.m\.relations.m\.thread`)
	if root.Get("content.body").String() != "root" || th.Get("count").Int() != 20 ||
		th.Get(`latest_event.unsigned.m\.relations.m\.replace.content.m\.new_content.body`).String() != "edited" ||
		len(root.Get(`unsigned.m\.relations.m\.reference.chunk`).Array()) != 1 {
		t.Fatalf("root: %s", root.Raw)
	}
}

// BenchmarkPeekWakeAggregations is what one wake of 100 peekers costs, served from the
// window with the database closed. "history": the events they are sent are a root with a
// 50-reply thread (each reply edited) and a reference, 102 events with aggregations;
// "wake": only the newest event, as a woken long-poll reads it. "plain" is the same number
// of events without relations. Per op: all 100 watchers.
func BenchmarkPeekWakeAggregations(b *testing.B) {
	for _, c := range []struct {
		name     string
		threaded bool
		wake     bool
	}{{"history/plain", false, false}, {"history/threaded", true, false}, {"wake/plain", false, true}, {"wake/threaded", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			sy, roomID, before := peekRoom(b, 50, c.threaded)
			if c.wake {
				before = sy.notifier.Current() - 1
			}
			guests := make([]*auth.Session, 100)
			for i := range guests {
				guests[i] = &auth.Session{UserID: fmt.Sprintf("@g%d:bench", i), DeviceID: "G", IsGuest: true}
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, g := range guests {
					if _, err := sy.Events(ctx, g, EventsRequest{RoomID: roomID, From: &before, Limit: 1000}); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
