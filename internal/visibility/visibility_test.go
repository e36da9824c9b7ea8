package visibility

import "testing"

func TestCanSeeTable(t *testing.T) {
	// Every history visibility × membership at the event × peeking or not.
	memberships := []string{"", Leave, Invite, Join, Ban, Knock}
	for _, vis := range []string{WorldReadable, Shared, Invited, Joined, "", "bogus"} {
		for _, m := range memberships {
			for _, peeking := range []bool{false, true} {
				got := CanSee(vis, m, peeking)
				want := expected(vis, m, peeking)
				if got != want {
					t.Errorf("CanSee(%q, %q, peeking=%v) = %v, want %v", vis, m, peeking, got, want)
				}
			}
		}
	}
}

// expected restates the rules of shared/PEEK-SEMANTICS.md §3.4 independently.
func expected(vis, m string, peeking bool) bool {
	switch vis {
	case "world_readable":
		return true
	case "joined":
		return m == "join"
	case "invited":
		return m == "join" || m == "invite"
	default: // shared, missing and unknown
		return m == "join" || !peeking
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
