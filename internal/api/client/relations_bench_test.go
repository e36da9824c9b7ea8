package client_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// BenchmarkInitialSyncThreads is one initial /sync of a user in a room whose last 40
// events are 8 thread roots with 4 replies each (one reply edited per thread), with a
// timeline of 20: limited, so its events carry their aggregations (from the room's
// window). "plain" is the same room with plain messages instead; "stored" variants keep
// only 16 items in the room's window, so the timeline and most aggregations are read from
// storage (three queries more).
func BenchmarkInitialSyncThreads(b *testing.B) {
	for _, c := range []struct {
		name     string
		threaded bool
		window   int
	}{{"plain", false, 512}, {"threaded", true, 512}, {"stored/plain", false, 16}, {"stored/threaded", true, 16}} {
		threaded := c.threaded
		b.Run(c.name, func(b *testing.B) {
			s := hstest.New(b, func(cfg *config.Config) { cfg.PeekWindow = c.window })
			alice := s.Register(b, "")
			room := alice.CreateRoom(b, map[string]any{"preset": "public_chat"})
			for i := range 8 {
				root := alice.Send(b, room, fmt.Sprintf("root %d", i))
				for j := range 4 {
					if !threaded {
						alice.Send(b, room, "plain")
						continue
					}
					r := alice.SendEvent(b, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprint(j),
						"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
					if j == 0 {
						alice.SendEvent(b, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* e",
							"m.new_content": map[string]any{"msgtype": "m.text", "body": "e"}, "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": r}})
					}
				}
			}
			path := "sync?filter=" + url.QueryEscape(`{"room":{"timeline":{"limit":20}}}`)
			if !joinedRoom(alice.Must(b, 200, "GET", path, nil), room).Get("timeline.limited").Bool() {
				b.Fatal("timeline not limited")
			}
			// Raw requests: the test client would check every answer against the spec.
			req, _ := http.NewRequest("GET", s.URL+"/_matrix/client/v3/"+path, nil)
			req.Header.Set("Authorization", "Bearer "+alice.Token)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
