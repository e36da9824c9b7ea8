// Package visibility decides who may see which room events: history visibility (spec
// "Room History Visibility", shared/PEEK-SEMANTICS.md §1.8 and §3.4). Pure functions, no I/O.
package visibility

// History visibility values.
const (
	WorldReadable = "world_readable"
	Shared        = "shared"
	Invited       = "invited"
	Joined        = "joined"
)

// Membership values.
const (
	Join   = "join"
	Invite = "invite"
	Leave  = "leave"
	Ban    = "ban"
	Knock  = "knock"
)

// Normalize maps a history_visibility content value to one of the four values; missing
// or unknown values count as shared.
func Normalize(v string) string {
	switch v {
	case WorldReadable, Shared, Invited, Joined:
		return v
	}
	return Shared
}

var openness = map[string]int{Joined: 0, Invited: 1, Shared: 2, WorldReadable: 3}

// LessRestrictive returns the more open of two visibilities. An m.room.history_visibility
// event is judged by the less restrictive of its old and new value, so both boundary
// events are seen by whoever could see either side.
func LessRestrictive(a, b string) string {
	a, b = Normalize(a), Normalize(b)
	if openness[b] > openness[a] {
		return b
	}
	return a
}

var joinedness = map[string]int{Join: 5, Invite: 4, Knock: 3, Leave: 2, Ban: 1, "": 0}

// MoreJoined returns the "more joined" of two memberships: the caller's own member event is
// judged by it, so a user sees their own join and the leave that follows it.
func MoreJoined(a, b string) string {
	if joinedness[b] > joinedness[a] {
		return b
	}
	return a
}

// CanSee reports whether a user may see an event whose effective history visibility is
// vis, given the user's membership at that event, and whether the user is peeking (reading
// a room they are not joined to, as a guest or non-member previewing it).
//
// The order follows Synapse (synapse/visibility.py): world_readable is open to all; a
// member joined at the event sees it; "shared" is open to anyone who is not peeking (a
// member, or one who left and reads up to their leave); "invited" also to a user invited at
// the event; everything else is hidden.
func CanSee(vis, membershipAtEvent string, peeking bool) bool {
	vis = Normalize(vis)
	if vis == WorldReadable {
		return true
	}
	if membershipAtEvent == Join {
		return true
	}
	switch vis {
	case Joined:
		return false
	case Invited:
		return membershipAtEvent == Invite
	default: // shared
		return !peeking
	}
}

// ClientMembership is the value reported in unsigned.membership (MSC4115): the user's
// membership at the event, "leave" when they had none.
func ClientMembership(m string) string {
	if m == "" {
		return Leave
	}
	return m
}
