package rooms_test

import (
	"testing"

	"porthole/internal/hstest"
)

// Removing a user whose level equals the sender's is refused (auth rule 10.9); mautrix's
// auth rules panic on it, which must not reach the request.
func TestPowerLevelsRemovingAnEqualIsForbidden(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	f := &forkRoom{s: s, alice: alice, room: room}
	pl := f.powerLevels(t)
	pl["users"].(map[string]any)["@other:x.test"] = 100
	f.putState(t, "m.room.power_levels", pl)
	delete(pl["users"].(map[string]any), "@other:x.test")
	alice.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/state/m.room.power_levels", pl)
	if got := f.powerLevels(t)["users"].(map[string]any)["@other:x.test"]; got != 100.0 {
		t.Fatalf("the refused change took: %v", got)
	}
}
