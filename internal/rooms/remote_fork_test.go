package rooms_test

import (
	"encoding/json/v2"
	"net/url"
	"testing"

	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
	"porthole/internal/rooms"
)

// forkRoom is a local room where alice (local, the creator) has given bob (remote) power
// level 50, at head; state is the room's state there.
type forkRoom struct {
	s     *hstest.Server
	alice *hstest.Client
	rs    *remoteServer
	room  string
	bob   string
	head  eventInfo
	state map[[2]string]id.EventID
	pl    map[string]any // the power levels content at head
}

func newForkRoom(t *testing.T, remoteUsers ...string) *forkRoom {
	s := hstest.New(t)
	f := &forkRoom{s: s, alice: s.Register(t, ""), rs: newRemote(t, s)}
	f.room = f.alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	f.bob = "@bob:" + f.rs.name
	for _, u := range append([]string{f.bob}, remoteUsers...) {
		head := lastEvent(t, f.alice, f.room)
		join, joinID := f.rs.event(f.room, []id.EventID{head.id}, head.depth+1, roomState(t, f.alice, f.room), u, "m.room.member", sk(u), map[string]string{"membership": "join"})
		if got := f.rs.persist(f.room, join, joinID); got != rooms.Accepted {
			t.Fatalf("remote join of %s: %s", u, got)
		}
	}
	f.pl = f.powerLevels(t)
	f.pl["users"].(map[string]any)[f.bob] = 50
	f.putState(t, "m.room.power_levels", f.pl)
	f.forkHere(t)
	return f
}

// forkHere makes the room's latest event the fork point.
func (f *forkRoom) forkHere(t *testing.T) {
	f.head, f.state, f.pl = lastEvent(t, f.alice, f.room), roomState(t, f.alice, f.room), f.powerLevels(t)
}

func (f *forkRoom) powerLevels(t testing.TB) map[string]any {
	var pl map[string]any
	raw := f.alice.Must(t, 200, "GET", hstest.Room(f.room)+"/state/m.room.power_levels", nil).JSON().Raw
	if err := json.Unmarshal([]byte(raw), &pl); err != nil {
		t.Fatal(err)
	}
	return pl
}

func (f *forkRoom) putState(t testing.TB, evType string, content any) id.EventID {
	return id.EventID(f.alice.Must(t, 200, "PUT", hstest.Room(f.room)+"/state/"+evType, content).Get("event_id").String())
}

// remote persists an event of a remote user built on the fork point (head), as a server
// that has not seen what alice did since.
func (f *forkRoom) remote(t *testing.T, prev []id.EventID, depth int64, sender, evType string, stateKey *string, content any) (id.EventID, rooms.Outcome) {
	t.Helper()
	p, eid := f.rs.event(f.room, prev, depth, f.state, sender, evType, stateKey, content)
	return eid, f.rs.persist(f.room, p, eid)
}

func clonePL(pl map[string]any) map[string]any {
	raw, _ := json.Marshal(pl)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// Alice raises the power needed for nothing new but names charlie, then sets the topic;
// bob, on a branch from before, sets the topic later. Both are allowed, the room forks,
// and alice's topic wins: it cites the newer power levels, so the mainline ordering puts
// bob's first although it was sent last.
func TestForkConcurrentTopicsResolveByMainline(t *testing.T) {
	f := newForkRoom(t)
	pl2 := clonePL(f.pl)
	pl2["users"].(map[string]any)["@charlie:"+f.rs.name] = 10
	pl2ID := f.putState(t, "m.room.power_levels", pl2)
	aliceTopic := f.putState(t, "m.room.topic", map[string]string{"topic": "alice's"})

	bobTopic, got := f.remote(t, []id.EventID{f.head.id}, f.head.depth+1, f.bob, "m.room.topic", sk(""), map[string]string{"topic": "bob's"})
	if got != rooms.Accepted {
		t.Fatalf("bob's topic: %s", got)
	}
	state := roomState(t, f.alice, f.room)
	if state[[2]string{"m.room.topic", ""}] != aliceTopic || state[[2]string{"m.room.power_levels", ""}] != pl2ID {
		t.Fatalf("after the fork: topic %s (alice's %s, bob's %s), power levels %s (want %s)",
			state[[2]string{"m.room.topic", ""}], aliceTopic, bobTopic, state[[2]string{"m.room.power_levels", ""}], pl2ID)
	}
	if topic := f.alice.Must(t, 200, "GET", hstest.Room(f.room)+"/state/m.room.topic", nil).Get("topic").String(); topic != "alice's" {
		t.Fatalf("topic: %q", topic)
	}
	// Bob's topic is in the timeline all the same, and the next local event merges the fork.
	f.alice.Must(t, 200, "GET", hstest.Room(f.room)+"/event/"+url.PathEscape(string(bobTopic)), nil)
	f.alice.Send(t, f.room, "merged")
	if ev := lastEvent(t, f.alice, f.room); len(ev.prev) != 2 {
		t.Fatalf("the merging event's prev events: %v", ev.prev)
	}
}

// Alice and bob change the power levels at once, each allowed on top of the other's:
// the resolution orders alice's first (her power is greater), so bob's, applied last and
// still allowed, is the room's.
func TestForkConcurrentPowerLevels(t *testing.T) {
	f := newForkRoom(t)
	f.pl["events"].(map[string]any)["m.room.power_levels"] = 50 // bob may change them
	f.putState(t, "m.room.power_levels", f.pl)
	f.forkHere(t)
	charlie := "@charlie:" + f.rs.name
	alicePL := clonePL(f.pl)
	alicePL["users"].(map[string]any)[charlie] = 10
	alicePLID := f.putState(t, "m.room.power_levels", alicePL)
	bobPL := clonePL(f.pl)
	bobPL["users_default"] = 5
	bobPLID, got := f.remote(t, []id.EventID{f.head.id}, f.head.depth+1, f.bob, "m.room.power_levels", sk(""), bobPL)
	if got != rooms.Accepted {
		ev, _ := f.s.Server.Store().EventByID(t.Context(), string(bobPLID))
		t.Fatalf("bob's power levels: %s (%s)", got, ev.OutlierReason)
	}
	state := roomState(t, f.alice, f.room)
	if got := state[[2]string{"m.room.power_levels", ""}]; got != bobPLID {
		t.Fatalf("power levels after the fork: %s (alice's %s, bob's %s)", got, alicePLID, bobPLID)
	}
	pl := f.powerLevels(t)
	if _, ok := pl["users"].(map[string]any)[charlie]; ok || pl["users_default"] != 5.0 {
		t.Fatalf("current power levels: %v", pl)
	}
}

// Alice bans bob while charlie, on bob's server, talks on a branch from before: the room
// forks and stays with the ban; bob's next message on that branch is allowed by the
// state before it but not by the room's: it is soft-failed.
func TestForkBanOnOneBranchMessageOnAnother(t *testing.T) {
	charlie := "@charlie:remote.test"
	f := newForkRoom(t, charlie)
	f.alice.Must(t, 200, "POST", hstest.Room(f.room)+"/ban", map[string]any{"user_id": f.bob})
	banID := roomState(t, f.alice, f.room)[[2]string{"m.room.member", f.bob}]
	msg, got := f.remote(t, []id.EventID{f.head.id}, f.head.depth+1, charlie, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "meanwhile"})
	if got != rooms.Accepted {
		t.Fatalf("charlie's message: %s", got)
	}
	state := roomState(t, f.alice, f.room)
	if ban := state[[2]string{"m.room.member", f.bob}]; ban != banID {
		t.Fatalf("bob's membership after the fork: %s, want the ban %s", ban, banID)
	}
	late, got := f.remote(t, []id.EventID{msg}, f.head.depth+2, f.bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "still here?"})
	if got != rooms.SoftFailed {
		t.Fatalf("bob's message after the ban, on the other branch: %s", got)
	}
	lateTopic, got := f.remote(t, []id.EventID{msg}, f.head.depth+2, f.bob, "m.room.topic", sk(""), map[string]string{"topic": "mine"})
	if got != rooms.SoftFailed {
		t.Fatalf("bob's topic after the ban, on the other branch: %s", got)
	}
	for _, e := range f.alice.Must(t, 200, "GET", hstest.Room(f.room)+"/messages?dir=b&limit=50", nil).Get("chunk").Array() {
		if x := id.EventID(e.Get("event_id").String()); x == late || x == lateTopic {
			t.Fatalf("a soft-failed event reached the timeline: %s", e.Raw)
		}
	}
	f.alice.Must(t, 200, "GET", hstest.Room(f.room)+"/event/"+url.PathEscape(string(msg)), nil)
	if got := roomState(t, f.alice, f.room)[[2]string{"m.room.topic", ""}]; got == lateTopic {
		t.Fatal("the soft-failed topic became current")
	}
}
