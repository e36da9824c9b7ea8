package stateres_test

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

// The graph shapes and outcomes of Synapse's state resolution v2 tests (its
// tests/state/test_v2.py): every case starts from initialEvents, and what is compared
// is the state before END that differs from the state after START, plus the keys of the
// expected events.
func TestV2Scenarios(t *testing.T) {
	pl := func(users map[string]int, extra ...any) map[string]any {
		c := map[string]any{"users": users}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i].(string)] = extra[i+1]
		}
		return c
	}
	cases := []struct {
		name   string
		events []fake
		chains [][]string
		want   []string
	}{{
		// Alice bans bob while bob, on another branch, sends power levels: the ban wins
		// and bob's power levels, no longer allowed, is dropped.
		name: "ban vs power levels",
		events: []fake{
			power("PA", alice, pl(map[string]int{alice: 100, bob: 50})),
			member("MA", alice, alice, "join"),
			member("MB", alice, bob, "ban"),
			power("PB", bob, pl(map[string]int{alice: 100, bob: 50})),
		},
		chains: [][]string{{"END", "MB", "MA", "PA", "START"}, {"END", "PB", "PA"}},
		want:   []string{"PA", "MA", "MB"},
	}, {
		// Evelyn joins on a branch where the room is still public; the other makes it
		// invite-only first: her join does not survive.
		name: "join rule evasion",
		events: []fake{
			{"JR", alice, "m.room.join_rules", sk(""), map[string]string{"join_rules": "private"}},
			member("ME", evelyn, evelyn, "join"),
		},
		chains: [][]string{{"END", "JR", "START"}, {"END", "ME", "START"}},
		want:   []string{"JR"},
	}, {
		// Power levels from someone who was demoted on no branch are kept: PC is
		// sent by charlie, whom PB made a moderator.
		name: "offtopic power levels",
		events: []fake{
			power("PA", alice, pl(map[string]int{alice: 100, bob: 50})),
			power("PB", bob, pl(map[string]int{alice: 100, bob: 50, charlie: 50})),
			power("PC", charlie, pl(map[string]int{alice: 100, bob: 50, charlie: 0})),
		},
		chains: [][]string{{"END", "PC", "PB", "PA", "START"}, {"END", "PA"}},
		want:   []string{"PC"},
	}, {
		// Bob, demoted by alice on one branch, changes the topic on another: alice's
		// demotion and her topic win.
		name: "topic basic",
		events: []fake{
			topic("T1", alice),
			power("PA1", alice, pl(map[string]int{alice: 100, bob: 50})),
			topic("T2", alice),
			power("PA2", alice, pl(map[string]int{alice: 100, bob: 0})),
			power("PB", bob, pl(map[string]int{alice: 100, bob: 50})),
			topic("T3", bob),
		},
		chains: [][]string{{"END", "PA2", "T2", "PA1", "T1", "START"}, {"END", "T3", "PB", "PA1"}},
		want:   []string{"PA2", "T2"},
	}, {
		// Bob's topic goes with his ban: the topic resets to T1, which the other
		// branch still has.
		name: "topic reset",
		events: []fake{
			topic("T1", alice),
			power("PA", alice, pl(map[string]int{alice: 100, bob: 50})),
			topic("T2", bob),
			member("MB", alice, bob, "ban"),
		},
		chains: [][]string{{"END", "MB", "T2", "PA", "T1", "START"}, {"END", "T1"}},
		want:   []string{"T1", "MB", "PA"},
	}, {
		name: "topic",
		events: []fake{
			topic("T1", alice),
			power("PA1", alice, pl(map[string]int{alice: 100, bob: 50})),
			topic("T2", alice),
			power("PA2", alice, pl(map[string]int{alice: 100, bob: 0})),
			power("PB", bob, pl(map[string]int{alice: 100, bob: 50})),
			topic("T3", bob),
			message("MZ1", zara),
			topic("T4", alice),
		},
		chains: [][]string{{"END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"}, {"END", "MZ1", "T3", "PB", "PA1"}},
		want:   []string{"T4", "PA2"},
	}, {
		// T3 wins although T4 was sent after it: T4 cites older power levels.
		name: "mainline sort",
		events: []fake{
			topic("T1", alice),
			power("PA1", alice, pl(map[string]int{alice: 100, bob: 50})),
			topic("T2", alice),
			power("PA2", alice, pl(map[string]int{alice: 100, bob: 50}, "events", map[string]int{"m.room.power_levels": 100})),
			power("PB", bob, pl(map[string]int{alice: 100, bob: 50})),
			topic("T3", bob),
			topic("T4", alice),
		},
		chains: [][]string{{"END", "T3", "PA2", "T2", "PA1", "T1", "START"}, {"END", "T4", "PB", "PA1"}},
		want:   []string{"T3", "PA2"},
	}}
	for _, version := range []id.RoomVersion{"10", "11"} {
		for _, c := range cases {
			t.Run(string(version)+"/"+c.name, func(t *testing.T) {
				r := newRoom(t, version)
				got, want := r.changed(r.dag(c.events, c.chains...), c.want...)
				r.expect(got, want)
			})
		}
	}
}
