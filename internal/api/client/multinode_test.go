package client_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"porthole/internal/hstest"
)

// on returns the same account's client talking to another node.
func on(c *hstest.Client, node *hstest.Server) *hstest.Client {
	return &hstest.Client{S: node, UserID: c.UserID, DeviceID: c.DeviceID, Token: c.Token}
}

// TestClusterCrossNodeDelivery: a message sent through node A reaches a guest peeking and a
// user syncing on node B.
func TestClusterCrossNodeDelivery(t *testing.T) {
	nodes := hstest.NewCluster(t, 2)
	a, b := nodes[0], nodes[1]
	owner := a.Register(t, "owner")
	room := owner.WorldReadableRoom(t)
	reader := b.Register(t, "reader")
	reader.Join(t, room)
	g := b.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	since := reader.Must(t, 200, "GET", "sync?set_presence=offline", nil).Get("next_batch").String()

	peek := make(chan hstest.Response, 1)
	synced := make(chan hstest.Response, 1)
	go func() { peek <- g.Do(t, "GET", eventsPath(room, from, "timeout=20000"), nil) }()
	go func() { synced <- reader.Do(t, "GET", "sync?set_presence=offline&timeout=20000&since="+since, nil) }()
	b.WaitParked(t, 2)
	owner.Send(t, room, "across nodes")
	if got := chunkBodies(<-peek); len(got) != 1 || got[0] != "across nodes" {
		t.Fatalf("peek on node B: %v", got)
	}
	if got := timelineBodies(joinedRoom(<-synced, room)); len(got) != 1 || got[0] != "across nodes" {
		t.Fatalf("sync on node B: %v", got)
	}
	// Typing and receipts cross too.
	from = g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	owner.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(owner.UserID), map[string]any{"typing": true, "timeout": 10000})
	r := g.Must(t, 200, "GET", eventsPath(room, from, "timeout=10000"), nil)
	if r.Get("chunk.0.type").String() != "m.typing" {
		t.Fatalf("typing on node B: %s", r)
	}
	// Logging out on node A ends a long-poll waiting on node B.
	done := make(chan hstest.Response, 1)
	since = reader.Must(t, 200, "GET", "sync?set_presence=offline&timeout=0&since="+since, nil).Get("next_batch").String()
	go func() { done <- reader.Do(t, "GET", "sync?set_presence=offline&timeout=30000&since="+since, nil) }()
	b.WaitParked(t, 1)
	on(reader, a).Must(t, 200, "POST", "logout", map[string]any{})
	if r := <-done; r.Status != 401 {
		t.Fatalf("long-poll on B after logout on A: %s", r)
	}
	reader.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
}

// TestClusterConcurrentWriters: two nodes write to one room at once; every peeker on every
// node gets every event exactly once and in the same order, and the room stays linear.
func TestClusterConcurrentWriters(t *testing.T) {
	nodes := hstest.NewCluster(t, 3)
	owner := nodes[0].Register(t, "owner")
	room := owner.WorldReadableRoom(t)
	other := nodes[1].Register(t, "other")
	other.Join(t, room)
	var tokens []string
	peekers := make([]*hstest.Client, len(nodes))
	for i, n := range nodes {
		peekers[i] = n.Guest(t)
		tokens = append(tokens, peekers[i].Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String())
	}
	const perWriter = 150
	var wg sync.WaitGroup
	for w, c := range []*hstest.Client{owner, other} {
		wg.Add(1)
		go func(w int, c *hstest.Client) {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				c.Send(t, room, fmt.Sprintf("w%d-%03d", w, i))
			}
		}(w, c)
	}
	wg.Wait()
	var orders [][]string
	for i, p := range peekers {
		var got []string
		from := tokens[i]
		for round := 0; round < 200 && len(got) < 2*perWriter; round++ {
			r := p.Must(t, 200, "GET", eventsPath(room, from, "timeout=5000&limit=50"), nil)
			got = append(got, chunkBodies(r)...)
			from = r.Get("end").String()
		}
		seen := map[string]bool{}
		for _, b := range got {
			if seen[b] {
				t.Fatalf("node %d delivered %s twice", i, b)
			}
			seen[b] = true
		}
		if len(got) != 2*perWriter {
			t.Fatalf("node %d delivered %d of %d events", i, len(got), 2*perWriter)
		}
		orders = append(orders, got)
	}
	for i := 1; i < len(orders); i++ {
		if strings.Join(orders[i], ",") != strings.Join(orders[0], ",") {
			t.Fatalf("node %d saw another order than node 0", i)
		}
	}
	// A transaction ID retried through another node gives the same event.
	first := owner.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.message/cross-node-txn", map[string]any{"msgtype": "m.text", "body": "once"}).Get("event_id").String()
	again := on(owner, nodes[2]).Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.message/cross-node-txn", map[string]any{"msgtype": "m.text", "body": "once"}).Get("event_id").String()
	if first != again {
		t.Fatalf("retry on another node: %s then %s", first, again)
	}
	// Each writer's events keep their own order, and /messages agrees with the stream.
	msgs := owner.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=f&limit=1000&filter="+url.QueryEscape(`{"types":["m.room.message"]}`), nil)
	if got := bodies(msgs, "chunk"); strings.Join(got[:len(got)-1], ",") != strings.Join(orders[0], ",") {
		t.Fatalf("/messages order differs from the stream order")
	}
}

// TestClusterNodeLoss: a node goes away mid-stream; its peekers resume on another node
// from their last token without a gap.
func TestClusterNodeLoss(t *testing.T) {
	nodes := hstest.NewCluster(t, 2)
	a, b := nodes[0], nodes[1]
	owner := a.Register(t, "owner")
	room := owner.WorldReadableRoom(t)
	g := b.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	var got []string
	for i := 0; i < 10; i++ {
		owner.Send(t, room, fmt.Sprintf("n%02d", i))
	}
	r := g.Must(t, 200, "GET", eventsPath(room, from, "timeout=5000&limit=5"), nil)
	got = append(got, chunkBodies(r)...)
	from = r.Get("end").String()
	b.Stop()
	for i := 10; i < 20; i++ {
		owner.Send(t, room, fmt.Sprintf("n%02d", i))
	}
	ga := on(g, a)
	for round := 0; round < 20 && len(got) < 20; round++ {
		r := ga.Must(t, 200, "GET", eventsPath(room, from, "timeout=5000&limit=7"), nil)
		got = append(got, chunkBodies(r)...)
		from = r.Get("end").String()
	}
	if len(got) != 20 {
		t.Fatalf("resumed stream has %d events: %v", len(got), got)
	}
	for i, body := range got {
		if body != fmt.Sprintf("n%02d", i) {
			t.Fatalf("gap or repeat at %d: %v", i, got)
		}
	}
}
