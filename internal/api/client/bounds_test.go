package client_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"porthole/internal/hstest"
)

// Inline filters are cached, but keyed by their hash and bounded in bytes: many distinct
// large filters (a guest can send any) do not grow memory without limit.
func TestFilterCacheBounded(t *testing.T) {
	s := hstest.New(t)
	g := s.Guest(t)
	pad := strings.Repeat("x", 20000)
	for i := 0; i < 600; i++ {
		f := fmt.Sprintf(`{"room":{"timeline":{"limit":1,"not_types":["%s%d"]}}}`, pad, i)
		g.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(f), nil)
	}
	entries, bytes := s.Server.API().FilterCacheUse()
	if bytes > 16<<20 || entries == 0 || entries >= 600 {
		t.Fatalf("filter cache after 600 distinct 20 KB filters: %d entries, %d bytes", entries, bytes)
	}
	// A cached filter still works.
	f := `{"room":{"timeline":{"limit":1}}}`
	g.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(f), nil)
	g.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(f), nil)
}

// Long-polls that time out leave nothing registered in the notifier: quiet rooms and
// users that were waited on once hold no memory afterwards.
func TestTimedOutPollsLeaveNoKeys(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	var roomIDs []string
	for i := 0; i < 5; i++ {
		roomIDs = append(roomIDs, owner.WorldReadableRoom(t))
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		g := s.Guest(t)
		u := s.Register(t, "")
		u.Join(t, roomIDs[i%5])
		since := u.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
		wg.Add(2)
		go func() { defer wg.Done(); g.Must(t, 200, "GET", eventsPath(roomIDs[i%5], "", "timeout=600"), nil) }()
		go func() { defer wg.Done(); u.Must(t, 200, "GET", "sync?timeout=600&since="+since, nil) }()
	}
	wg.Wait()
	n := s.Server.Notifier()
	if n.ListenedKeys() != 0 || n.Subscriptions() != 0 {
		t.Fatalf("after every long-poll timed out: %d keys, %d room subscriptions", n.ListenedKeys(), n.Subscriptions())
	}
	_ = hstest.Room
}

// A guest who joins and leaves many times (more than the room keeps in memory) still sees
// exactly the messages of the periods it was joined, read from storage when needed.
func TestLongMembershipHistory(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "joined"}},
		{"type": "m.room.guest_access", "content": map[string]string{"guest_access": "can_join"}}}})
	g := s.Guest(t)
	var want []string
	for i := 0; i < 45; i++ {
		g.Join(t, room)
		msg := fmt.Sprintf("while joined %d", i)
		owner.Send(t, room, msg)
		want = append(want, msg)
		g.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
		owner.Send(t, room, fmt.Sprintf("while away %d", i))
	}
	g.Join(t, room)
	got := bodies(g.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=f&limit=500&from=s0", nil), "chunk")
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("messages seen after 90 membership changes:\n got %v\nwant %v", got, want)
	}
}
