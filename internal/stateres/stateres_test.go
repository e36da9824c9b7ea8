package stateres_test

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"

	"porthole/internal/stateres"
)

func TestResolveEdges(t *testing.T) {
	r := newRoom(t, "11")
	r.dag([]fake{topic("T1", alice), topic("T2", alice)}, []string{"END", "T1", "START"}, []string{"END", "T2", "START"})
	t1, t2 := r.after["T1"], r.after["T2"]

	if got := r.resolve(); len(got) != 0 {
		t.Fatalf("no sets: %s", r.show(got))
	}
	r.expect(r.resolve(t1), t1)
	r.expect(r.resolve(t1, t1), t1)
	if _, err := stateres.Resolve("99", []stateres.StateMap{t1, t2}, r.fetch, nil); !errors.Is(err, id.ErrUnknownRoomVersion) {
		t.Fatalf("unknown version: %v", err)
	}
	missing := maps(t2)
	missing[stateres.StateKey{Type: "m.room.name"}] = "$nowhere"
	if _, err := stateres.Resolve("11", []stateres.StateMap{t1, missing}, r.fetch, nil); !errors.Is(err, stateres.ErrUnknownEvent) {
		t.Fatalf("a state event that cannot be fetched: %v", err)
	}
	// Same timestamps' tie is broken by ID, and the answer is the same whatever the
	// order of the sets.
	a, b := r.resolve(t1, t2), r.resolve(t2, t1)
	r.expect(a, b)
}

// In v2 a key that only some sets have is a conflict: a join on one branch is checked
// again, and kept while it passes.
func TestV2KeyMissingFromASetIsConflicted(t *testing.T) {
	r := newRoom(t, "10")
	end := r.dag([]fake{
		member("ME", evelyn, evelyn, "join"),
		{"JR", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "invite"}},
	}, []string{"END", "ME", "START"}, []string{"END", "JR", "START"})
	// Evelyn's join and the invite-only rule are both conflicted; the join rules are a
	// power event and go first, so evelyn's join is then refused.
	if _, ok := end[stateres.StateKey{Type: "m.room.member", StateKey: evelyn}]; ok {
		t.Fatalf("evelyn's join survived the join rules: %s", r.show(end))
	}
	if end[stateres.StateKey{Type: "m.room.join_rules"}] != r.id("JR") {
		t.Fatalf("join rules: %s", r.show(end))
	}
}

// Room version 2 already uses state resolution v2.
func TestRoomVersion2UsesV2(t *testing.T) {
	useEventIDsOfEvents(t)
	r := newRoom(t, "2")
	pl := map[string]any{"users": map[string]int{alice: 100, bob: 50}}
	got, want := r.changed(r.dag([]fake{
		power("PA", alice, pl),
		member("MA", alice, alice, "join"),
		member("MB", alice, bob, "ban"),
		power("PB", bob, pl),
	}, []string{"END", "MB", "MA", "PA", "START"}, []string{"END", "PB", "PA"}), "PA", "MA", "MB")
	r.expect(got, want) // v1 would have lost the ban (TestV1)
}
