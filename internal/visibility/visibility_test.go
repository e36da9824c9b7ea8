package visibility

import "testing"

// TestCanSeeTable lists the answer for every history visibility × membership at the event
// × peeking or not (shared/PEEK-SEMANTICS.md §3.4; Synapse's filter_events_for_client).
// Being a guest is not a dimension of this rule: a guest differs from a user only in which
// rooms it may open at all (decided before events are judged); the HTTP peek tests run
// every case for both (peekers() in internal/api/client).
func TestCanSeeTable(t *testing.T) {
	type row struct {
		vis, membership string
		peeking, want   bool
	}
	rows := []row{}
	add := func(vis string, peek bool, want map[string]bool) {
		for _, m := range []string{"", Leave, Invite, Join, Ban, Knock} {
			rows = append(rows, row{vis, m, peek, want[m]})
		}
	}
	all := map[string]bool{"": true, Leave: true, Invite: true, Join: true, Ban: true, Knock: true}
	add(WorldReadable, false, all)
	add(WorldReadable, true, all)
	// shared (and missing or unknown values, which count as shared): anyone not peeking.
	for _, vis := range []string{Shared, "", "bogus"} {
		add(vis, false, all)
		add(vis, true, map[string]bool{Join: true})
	}
	add(Invited, false, map[string]bool{Join: true, Invite: true})
	add(Invited, true, map[string]bool{Join: true, Invite: true})
	add(Joined, false, map[string]bool{Join: true})
	add(Joined, true, map[string]bool{Join: true})
	if len(rows) != 6*2*6 {
		t.Fatalf("table has %d rows", len(rows))
	}
	for _, r := range rows {
		if got := CanSee(r.vis, r.membership, r.peeking); got != r.want {
			t.Errorf("CanSee(%q, %q, peeking=%v) = %v, want %v", r.vis, r.membership, r.peeking, got, r.want)
		}
	}
}

func TestPeekerSeesOnlyWorldReadable(t *testing.T) {
	for _, vis := range []string{Shared, Invited, Joined, ""} {
		if CanSee(vis, "", true) {
			t.Errorf("a never-joined peeker must not see %q events", vis)
		}
	}
	if !CanSee(WorldReadable, "", true) {
		t.Error("a peeker must see world_readable events")
	}
}

func TestLessRestrictive(t *testing.T) {
	cases := []struct{ a, b, want string }{
		{WorldReadable, Shared, WorldReadable},
		{Shared, WorldReadable, WorldReadable},
		{Joined, Invited, Invited},
		{Invited, Joined, Invited},
		{Joined, "", Shared},
		{"nonsense", Joined, Shared},
		{Joined, Joined, Joined},
	}
	for _, c := range cases {
		if got := LessRestrictive(c.a, c.b); got != c.want {
			t.Errorf("LessRestrictive(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestMoreJoined(t *testing.T) {
	cases := []struct{ a, b, want string }{
		{Join, Leave, Join},
		{Leave, Join, Join},
		{Invite, Leave, Invite},
		{Leave, Ban, Leave},
		{"", Invite, Invite},
		{Knock, Invite, Invite},
	}
	for _, c := range cases {
		if got := MoreJoined(c.a, c.b); got != c.want {
			t.Errorf("MoreJoined(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{"": Shared, "x": Shared, Joined: Joined, WorldReadable: WorldReadable} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
