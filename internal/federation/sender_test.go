package federation_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
	"porthole/internal/rooms"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
)

// txnPeer is a peer that records the transactions it is sent, answering with status()
// (200 when nil), and can hold a transaction until released.
type txnPeer struct {
	*hstest.Peer
	mu     sync.Mutex
	txns   []recordedTxn
	status func() int
	hold   chan struct{} // while non-nil, a transaction waits for it to close
	got    chan struct{}
}

type recordedTxn struct {
	id     string
	origin string
	pdus   []gjson.Result
	edus   []gjson.Result
}

func newTxnPeer(t *testing.T, s *hstest.Server) *txnPeer {
	p := &txnPeer{Peer: hstest.NewPeer(t, s.CA), got: make(chan struct{}, 1000)}
	p.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") || r.Method != "PUT" {
			http.NotFound(w, r)
			return
		}
		if !strings.Contains(r.Header.Get("Authorization"), `origin="`+s.Name+`"`) {
			t.Errorf("transaction without the sender's X-Matrix origin: %q", r.Header.Get("Authorization"))
		}
		raw, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		status, hold := 200, p.hold
		if p.status != nil {
			status = p.status()
		}
		p.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		if status != 200 {
			w.WriteHeader(status)
			io.WriteString(w, `{"errcode":"M_UNKNOWN","error":"down"}`)
			return
		}
		body := gjson.ParseBytes(raw)
		p.mu.Lock()
		p.txns = append(p.txns, recordedTxn{id: strings.TrimPrefix(r.URL.Path, "/_matrix/federation/v1/send/"),
			origin: body.Get("origin").String(), pdus: body.Get("pdus").Array(), edus: body.Get("edus").Array()})
		p.mu.Unlock()
		io.WriteString(w, `{"pdus":{}}`)
		p.got <- struct{}{}
	})
	return p
}

// bodies lists the message bodies received, in order, with how often each came.
func (p *txnPeer) bodies() ([]string, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var order []string
	seen := map[string]int{}
	for _, txn := range p.txns {
		for _, e := range txn.pdus {
			if e.Get("type").String() != "m.room.message" {
				continue
			}
			b := e.Get("content.body").String()
			if seen[b] == 0 {
				order = append(order, b)
			}
			seen[b]++
		}
	}
	return order, seen
}

// waitBodies waits until the peer has received n message bodies.
func (p *txnPeer) waitBodies(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if order, _ := p.bodies(); len(order) >= n {
			return order
		}
		select {
		case <-p.got:
		case <-deadline:
			order, _ := p.bodies()
			t.Fatalf("the peer got %d messages, want %d: %v", len(order), n, order)
		}
	}
}

// joinPeer makes a user of the peer join a room of s, as the peer would over federation:
// a join event it signs, persisted as received.
func joinPeer(t *testing.T, s *hstest.Server, p *hstest.Peer, roomID, localpart string) string {
	t.Helper()
	ctx := context.Background()
	st := s.Server.Store()
	room, err := st.Room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	state, err := st.CurrentStateIDs(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	user := "@" + localpart + ":" + p.Name
	version := id.RoomVersion(room.Version)
	ev := &pdu.PDU{Type: "m.room.member", StateKey: &user, Sender: id.UserID(user), RoomID: id.RoomID(roomID),
		Content: []byte(`{"membership":"join"}`), OriginServerTS: time.Now().UnixMilli(), Depth: room.Depth + 1, AuthEvents: []id.EventID{}}
	for _, x := range room.Extremities {
		ev.PrevEvents = append(ev.PrevEvents, id.EventID(x))
	}
	for _, k := range ev.AuthEventSelection(version) {
		if eid := state[storage.StateKeyOf{Type: k.Type, StateKey: k.StateKey}]; eid != "" {
			ev.AuthEvents = append(ev.AuthEvents, id.EventID(eid))
		}
	}
	if err := ev.Sign(version, p.Name, p.Key.ID, p.Key.Priv); err != nil {
		t.Fatal(err)
	}
	eid, err := ev.GetEventID(version)
	if err != nil {
		t.Fatal(err)
	}
	if roomversion.V1Format(version) {
		t.Fatal("joinPeer is for rooms of v3+")
	}
	out, err := s.Server.Rooms().PersistRemote(ctx, roomID, rooms.RemoteEvent{PDU: ev, EventID: eid})
	if err != nil || out != rooms.Accepted {
		t.Fatalf("peer join: %s %v", out, err)
	}
	return user
}

// Local events of a room reach the servers of its joined members, in order, once each; the
// remote member's own join is not sent back to its server; a server the room does not
// involve gets nothing.
func TestSenderDeliversToJoinedServers(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	peer := newTxnPeer(t, s)
	other := newTxnPeer(t, s)
	joinPeer(t, s, peer.Peer, room, "bob")
	alice.CreateRoom(t, map[string]any{"preset": "public_chat"}) // a room without the peer

	for _, b := range []string{"one", "two", "three"} {
		alice.Send(t, room, b)
	}
	if got := peer.waitBodies(t, 3); strings.Join(got, " ") != "one two three" {
		t.Fatalf("order: %v", got)
	}
	_, seen := peer.bodies()
	peer.mu.Lock()
	for _, txn := range peer.txns {
		if txn.origin != s.Name {
			t.Errorf("transaction origin %q", txn.origin)
		}
		for _, e := range txn.pdus {
			if e.Get("type").String() == "m.room.member" && strings.HasSuffix(e.Get("state_key").String(), ":"+peer.Name) {
				t.Errorf("the peer's own join was sent back to it")
			}
		}
	}
	peer.mu.Unlock()
	for b, n := range seen {
		if n != 1 {
			t.Errorf("%q arrived %d times", b, n)
		}
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	if len(other.txns) != 0 {
		t.Errorf("a server not in the room got %d transactions", len(other.txns))
	}
}

// While one transaction is in flight nothing else is sent to that server; what queues
// meanwhile goes in transactions of at most 50 PDUs, in order.
func TestSenderOneTransactionInFlight(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	peer := newTxnPeer(t, s)
	hold := make(chan struct{})
	peer.mu.Lock()
	peer.hold = hold
	peer.mu.Unlock()
	joinPeer(t, s, peer.Peer, room, "bob")
	var want []string
	for i := range 120 {
		b := "m" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		want = append(want, b)
		alice.Send(t, room, b)
	}
	peer.mu.Lock()
	peer.hold = nil
	peer.mu.Unlock()
	close(hold)
	got := peer.waitBodies(t, 120)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("order:\n got %v\nwant %v", got, want)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	for _, txn := range peer.txns {
		if len(txn.pdus) > 50 {
			t.Errorf("transaction %s has %d PDUs", txn.id, len(txn.pdus))
		}
	}
	if len(peer.txns) > 5 {
		t.Errorf("%d transactions for 120 events queued behind one", len(peer.txns))
	}
}

// A server that fails is backed off; when it sends us a request it is tried at once, and
// it gets a catch-up: the room's latest 50 events, not everything it missed.
func TestSenderBackoffAndCatchUp(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	peer := newTxnPeer(t, s)
	joinPeer(t, s, peer.Peer, room, "bob")
	var mu sync.Mutex
	down, attempts := true, 0
	peer.mu.Lock()
	peer.status = func() int {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if down {
			return 502
		}
		return 200
	}
	peer.mu.Unlock()
	var want []string
	for i := range 80 {
		b := "n" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		want = append(want, b)
		alice.Send(t, room, b)
	}
	mu.Lock()
	tried := attempts
	down = false
	mu.Unlock()
	if tried < 1 || tried > 3 {
		t.Fatalf("%d attempts while the server was down, want 1 or 2 (backoff)", tried)
	}
	// The peer sends a request: its backoff ends.
	if r := peer.Do(t, s, "GET", "/_matrix/federation/v1/query/profile?user_id="+alice.UserID, nil); r.Status != 200 {
		t.Fatalf("profile query: %s", r)
	}
	got := peer.waitBodies(t, 50)
	if strings.Join(got, " ") != strings.Join(want[30:], " ") {
		t.Fatalf("catch-up:\n got %v\nwant %v", got, want[30:])
	}
	// Later events flow as usual.
	alice.Send(t, room, "after")
	if got := peer.waitBodies(t, 51); got[50] != "after" {
		t.Fatalf("after the catch-up: %v", got)
	}
}
