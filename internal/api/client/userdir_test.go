package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

func directoryIDs(t *testing.T, c *hstest.Client, term string) []string {
	t.Helper()
	r := c.Must(t, 200, "POST", "user_directory/search", map[string]any{"search_term": term})
	var out []string
	for _, u := range r.Get("results").Array() {
		out = append(out, u.Get("user_id").String())
	}
	return out
}

func setName(t *testing.T, c *hstest.Client, name string) {
	t.Helper()
	c.Must(t, 200, "PUT", "profile/"+url.PathEscape(c.UserID)+"/displayname", map[string]any{"displayname": name})
}

func TestUserDirectory(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "dir-alice")
	bob := s.Register(t, "dir-bob")
	carol := s.Register(t, "dir-carol")
	setName(t, alice, "Alice Zebra")
	setName(t, bob, "Bob Zebra")
	setName(t, carol, "Carol Zebra")

	// Nobody shares a room yet, and nobody is in a public room.
	if got := directoryIDs(t, alice, "zebra"); len(got) != 0 {
		t.Fatalf("before any room: %v", got)
	}
	// A private room: its members find each other, others do not find them.
	private := alice.CreateRoom(t, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	bob.Join(t, private)
	if got := directoryIDs(t, alice, "zebra"); !slices.Equal(got, []string{bob.UserID}) {
		t.Fatalf("alice in a private room with bob: %v", got)
	}
	if got := directoryIDs(t, carol, "zebra"); len(got) != 0 {
		t.Fatalf("carol sees private members: %v", got)
	}
	// A public room: its members are found by everyone, themselves included.
	public := carol.CreateRoom(t, map[string]any{"preset": "public_chat"})
	if got := directoryIDs(t, alice, "zebra"); !slices.Equal(got, []string{bob.UserID, carol.UserID}) {
		t.Fatalf("with carol in a public room: %v", got)
	}
	if got := directoryIDs(t, carol, "carol"); !slices.Equal(got, []string{carol.UserID}) {
		t.Fatalf("carol finds herself: %v", got)
	}
	// Leaving takes her out; a world-readable room counts as public too.
	carol.Must(t, 200, "POST", hstest.Room(public)+"/leave", map[string]any{})
	if got := directoryIDs(t, alice, "carol"); len(got) != 0 {
		t.Fatalf("after carol left: %v", got)
	}
	readable := carol.CreateRoom(t, map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})
	if got := directoryIDs(t, alice, "carol"); !slices.Equal(got, []string{carol.UserID}) {
		t.Fatalf("carol in a world-readable room: %v", got)
	}
	carol.SetState(t, readable, "m.room.history_visibility", "", map[string]string{"history_visibility": "shared"})
	if got := directoryIDs(t, alice, "carol"); len(got) != 0 {
		t.Fatalf("after the room stopped being readable: %v", got)
	}

	// Words are matched by prefix, on the display name and the user ID, all of them.
	for term, want := range map[string][]string{
		"zeb": {bob.UserID}, "ZEBRA bo": {bob.UserID}, "dir-bob": {bob.UserID}, "bob:localhost": {bob.UserID},
		"ebra": nil, "zebra alice": nil, "!!": nil, "": nil,
	} {
		if got := directoryIDs(t, alice, term); !slices.Equal(got, want) {
			t.Errorf("search %q: %v, want %v", term, got, want)
		}
	}
	// Profile changes are found at once, the old name no more.
	setName(t, bob, "Robert Quagga")
	if got := directoryIDs(t, alice, "quag"); !slices.Equal(got, []string{bob.UserID}) {
		t.Fatalf("new name: %v", got)
	}
	if got := directoryIDs(t, alice, "bob zebra"); len(got) != 0 {
		t.Fatalf("old name: %v", got)
	}
	bob.Must(t, 200, "PUT", "profile/"+url.PathEscape(bob.UserID)+"/avatar_url", map[string]any{"avatar_url": "mxc://localhost/q"})
	r := alice.Must(t, 200, "POST", "user_directory/search", map[string]any{"search_term": "robert"})
	if r.Get("results.0.display_name").String() != "Robert Quagga" || r.Get("results.0.avatar_url").String() != "mxc://localhost/q" || r.Get("limited").Bool() {
		t.Fatalf("result: %s", r)
	}

	// Best matches first; limit and limited.
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	for i, name := range []string{"Ann", "Annabel", "Annette Ann", "Hannah"} {
		u := s.Register(t, fmt.Sprintf("dir-u%d", i))
		setName(t, u, name)
		u.Join(t, room)
	}
	r = alice.Must(t, 200, "POST", "user_directory/search", map[string]any{"search_term": "ann", "limit": 2})
	if n := len(r.Get("results").Array()); n != 2 || !r.Get("limited").Bool() {
		t.Fatalf("limit 2: %s", r)
	}
	r = alice.Must(t, 200, "POST", "user_directory/search", map[string]any{"search_term": "ann"})
	names := []string{}
	for _, u := range r.Get("results").Array() {
		names = append(names, u.Get("display_name").String())
	}
	if !slices.Equal(names, []string{"Ann", "Annette Ann", "Annabel"}) || r.Get("limited").Bool() {
		t.Fatalf("ranking: %v", names)
	}

	// Deactivated users leave the directory.
	carol.CreateRoom(t, map[string]any{"preset": "public_chat"})
	carol.Must(t, 401, "POST", "account/deactivate", map[string]any{})
	sess := carol.Must(t, 401, "POST", "account/deactivate", map[string]any{}).Get("session").String()
	carol.Must(t, 200, "POST", "account/deactivate", map[string]any{"auth": map[string]any{"type": "m.login.password", "session": sess,
		"identifier": map[string]string{"type": "m.id.user", "user": carol.UserID}, "password": "pw-dir-carol"}})
	if got := directoryIDs(t, alice, "carol"); len(got) != 0 {
		t.Fatalf("deactivated user found: %v", got)
	}

	alice.MustErr(t, 400, "M_MISSING_PARAM", "POST", "user_directory/search", map[string]any{})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "user_directory/search", map[string]any{"search_term": 5})
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "POST", "user_directory/search", map[string]any{"search_term": "x"})
}

func TestUserDirectorySearchAllUsers(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.UserDirectory.SearchAllUsers = true })
	alice := s.Register(t, "all-alice")
	bob := s.Register(t, "all-bob")
	setName(t, bob, "Lonely Bob")
	if got := directoryIDs(t, alice, "lonely"); !slices.Equal(got, []string{bob.UserID}) {
		t.Fatalf("search_all_users: %v", got)
	}
	// The searcher is left out, as Synapse does with search_all_users.
	if got := directoryIDs(t, alice, "all-alice"); len(got) != 0 {
		t.Fatalf("searcher found: %v", got)
	}
}
