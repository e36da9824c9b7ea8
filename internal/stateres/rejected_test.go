package stateres_test

import (
	"testing"

	"maunium.net/go/mautrix/id"

	"porthole/internal/stateres"
)

// reject marks events as rejected in what the room's fetch returns.
func (r *room) reject(names ...string) {
	for _, n := range names {
		r.pdus[r.id(n)].InternalMeta.Rejected = true
	}
}

// A rejected event in a state set is not admitted again (as Synapse does): bob's later
// topic would win by the mainline ordering.
func TestRejectedEventsAreNotAdmitted(t *testing.T) {
	pl := map[string]any{"users": map[string]int{alice: 100, bob: 50}}
	build := func() *room {
		r := newRoom(t, "10")
		r.dag([]fake{power("PA", alice, pl), topic("T1", alice), topic("T2", bob)},
			[]string{"END", "T1", "PA", "START"}, []string{"END", "T2", "PA"})
		return r
	}
	r := build()
	r.expectID(r.resolve(r.after["T1"], r.after["T2"])[topicKey], "T2")
	r = build()
	r.reject("T2")
	r.expectID(r.resolve(r.after["T1"], r.after["T2"])[topicKey], "T1")
}

var topicKey = stateres.StateKey{Type: "m.room.topic"}

// In v2.1 the iterative auth checks start from nothing, so a key the state lacks is
// taken from the event's own auth events, unless that auth event was rejected.
func TestRejectedAuthEventsAreNotUsed(t *testing.T) {
	build := func() *room {
		r := newRoom(t, "12")
		join := map[string]string{"membership": "join"}
		r.build("CREATE", alice, "m.room.create", sk(""), map[string]string{"room_version": "12"}, nil, nil)
		r.build("MA", alice, "m.room.member", sk(alice), join, nil, []string{"CREATE"})
		r.build("P", alice, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{}}, []string{"MA"}, nil)
		r.build("JR1", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "public"}, []string{"MA", "P"}, nil)
		r.build("JR2", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "invite"}, []string{"MA", "P"}, nil)
		return r
	}
	r := build()
	a, b := r.state("CREATE", "MA", "P", "JR1"), r.state("CREATE", "MA", "P", "JR2")
	r.expectID(r.resolve(a, b)[jrKey], "JR2")
	r = build()
	r.reject("MA") // alice's membership, unconflicted, is only found among the auth events
	a, b = r.state("CREATE", "MA", "P", "JR1"), r.state("CREATE", "MA", "P", "JR2")
	if got, ok := r.resolve(a, b)[jrKey]; ok {
		t.Fatalf("join rules authorized by a rejected membership: %s", r.names[got])
	}
}

var jrKey = stateres.StateKey{Type: "m.room.join_rules"}

func (r *room) expectID(got id.EventID, want string) {
	r.t.Helper()
	if got != r.id(want) {
		r.t.Fatalf("got %s, want %s", r.names[got], want)
	}
}
