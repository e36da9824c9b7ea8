package stateres_test

import (
	"testing"
)

// The state resets that state resolution v2.1 (room version 12) fixes, as Synapse's
// tests/state/test_v21.py shapes them, with explicit auth events.
func TestV21ReplaysTheConflictedSubgraph(t *testing.T) {
	r := newRoom(t, "12")
	join := map[string]string{"membership": "join"}
	r.build("CREATE", alice, "m.room.create", sk(""), map[string]string{"room_version": "12"}, nil, nil)
	r.build("MA", alice, "m.room.member", sk(alice), join, nil, []string{"CREATE"})
	r.build("POWER1", alice, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{}}, []string{"MA"}, nil)
	r.build("JR", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "public"}, []string{"MA", "POWER1"}, nil)
	r.build("MB", bob, "m.room.member", sk(bob), join, []string{"POWER1", "JR"}, nil)
	r.build("MC", charlie, "m.room.member", sk(charlie), join, []string{"POWER1", "JR"}, nil)
	r.build("POWER2", alice, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{bob: 50}}, []string{"MA", "POWER1"}, nil)
	r.build("POWER3", bob, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{bob: 50, charlie: 50}}, []string{"MB", "POWER2"}, nil)
	r.build("ME1", evelyn, "m.room.member", sk(evelyn), join, []string{"POWER3", "JR"}, nil)
	// Evelyn changes her name citing the old power levels directly, the new ones only
	// through her previous join.
	r.build("ME2", evelyn, "m.room.member", sk(evelyn), map[string]string{"membership": "join", "displayname": "Eve"}, []string{"POWER1", "JR", "ME1"}, nil)
	r.build("MZ", zara, "m.room.member", sk(zara), join, []string{"POWER3", "JR"}, nil)

	// A server that says the state after ME2 has the old power levels.
	dodgy := r.state("CREATE", "MA", "MB", "MC", "ME2", "POWER1", "JR")
	sensible := r.state("CREATE", "MA", "MB", "MC", "MZ", "POWER3", "JR")
	// ME2 is replayed in the POWER1 epoch, then ME1 in the POWER3 one.
	r.expect(r.resolve(dodgy, sensible), r.state("CREATE", "MA", "MB", "MC", "ME1", "MZ", "POWER3", "JR"))
	r.expect(r.resolve(sensible, dodgy), r.state("CREATE", "MA", "MB", "MC", "ME1", "MZ", "POWER3", "JR"))
}

func TestV21StartsFromTheEmptyState(t *testing.T) {
	r := newRoom(t, "12")
	join := map[string]string{"membership": "join"}
	r.build("CREATE", alice, "m.room.create", sk(""), map[string]string{"room_version": "12"}, nil, nil)
	r.build("MA1", alice, "m.room.member", sk(alice), join, nil, []string{"CREATE"})
	r.build("POWER", alice, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{bob: 100}}, []string{"MA1"}, nil)
	r.build("JR1", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "public"}, []string{"MA1", "POWER"}, nil)
	r.build("MB", bob, "m.room.member", sk(bob), join, []string{"POWER", "JR1"}, nil)
	r.build("JR2", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "invite"}, []string{"MA1", "POWER"}, nil)
	r.build("MA2", alice, "m.room.member", sk(alice), map[string]string{"membership": "leave"}, []string{"POWER", "MA1"}, nil)

	correct := r.state("CREATE", "MA2", "MB", "POWER", "JR2")
	// Another server's fork cites the old join rules. Starting from the unconflicted
	// state (alice gone) neither join rules would pass; from nothing both do, and the
	// newer wins.
	incorrect := r.state("CREATE", "MA2", "MB", "POWER", "JR1")
	r.expect(r.resolve(correct, incorrect), correct)
	r.expect(r.resolve(incorrect, correct), correct)
}
