package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"porthole/internal/hstest"
)

func searchBody(term string, extra map[string]any) map[string]any {
	re := map[string]any{"search_term": term}
	for k, v := range extra {
		re[k] = v
	}
	return map[string]any{"search_categories": map[string]any{"room_events": re}}
}

func searchIDs(r hstest.Response) []string {
	var out []string
	for _, x := range r.Get("search_categories.room_events.results").Array() {
		out = append(out, x.Get("result.event_id").String())
	}
	return out
}

func TestSearch(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "search-alice")
	bob := s.Register(t, "search-bob")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "Walrus lounge", "topic": "about walruses"})
	bob.Join(t, room)
	m1 := alice.Send(t, room, "the walrus sings")
	m2 := bob.Send(t, room, "Walrus WALRUS walrus")
	m3 := alice.Send(t, room, "a seal, not a walrus")
	other := alice.Send(t, room, "nothing to see")
	_ = other

	// Most recent first, with the count and the words to highlight.
	r := alice.Must(t, 200, "POST", "search", searchBody("walrus", map[string]any{"order_by": "recent", "keys": []string{"content.body"}}))
	if got := searchIDs(r); !slices.Equal(got, []string{m3, m2, m1}) {
		t.Fatalf("recent: %v", got)
	}
	re := r.Get("search_categories.room_events")
	if re.Get("count").Int() != 3 || re.Get("highlights.0").String() != "walrus" || re.Get("next_batch").Exists() {
		t.Fatalf("recent envelope: %s", re.Raw)
	}
	if re.Get("results.0.result.content.body").String() != "a seal, not a walrus" || re.Get("results.0.result.room_id").String() != room {
		t.Fatalf("result event: %s", re.Get("results.0").Raw)
	}
	// By rank (the default), the message saying it three times comes first; name and
	// topic are searched too unless keys say otherwise.
	r = alice.Must(t, 200, "POST", "search", searchBody("walrus", nil))
	if got := searchIDs(r); len(got) != 5 || got[0] != m2 {
		t.Fatalf("rank: %v", got)
	}
	if got := searchIDs(alice.Must(t, 200, "POST", "search", searchBody("lounge", nil))); len(got) != 1 {
		t.Fatalf("room name: %v", got)
	}
	// Prefixes and several words.
	if got := searchIDs(alice.Must(t, 200, "POST", "search", searchBody("wal sing", nil))); !slices.Equal(got, []string{m1}) {
		t.Fatalf("prefix words: %v", got)
	}

	// Pages, in both orders.
	for _, order := range []string{"recent", "rank"} {
		var all []string
		next := ""
		for page := 0; page < 5; page++ {
			path := "search"
			if next != "" {
				path += "?next_batch=" + url.QueryEscape(next)
			}
			r := alice.Must(t, 200, "POST", path, searchBody("walrus", map[string]any{"order_by": order, "filter": map[string]any{"limit": 2}}))
			ids := searchIDs(r)
			if len(ids) > 2 {
				t.Fatalf("%s page %d: %v", order, page, ids)
			}
			all = append(all, ids...)
			next = r.Get("search_categories.room_events.next_batch").String()
			if next == "" {
				break
			}
		}
		slices.Sort(all)
		if len(all) != 5 || len(slices.Compact(all)) != 5 {
			t.Fatalf("%s pages: %v", order, all)
		}
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "search?next_batch=nonsense", searchBody("walrus", nil))

	// Filters.
	r = alice.Must(t, 200, "POST", "search", searchBody("walrus", map[string]any{"order_by": "recent", "filter": map[string]any{"senders": []string{bob.UserID}}}))
	if got := searchIDs(r); !slices.Equal(got, []string{m2}) {
		t.Fatalf("senders filter: %v", got)
	}
	r = alice.Must(t, 200, "POST", "search", searchBody("walrus", map[string]any{"filter": map[string]any{"not_types": []string{"m.room.message"}}}))
	if got := searchIDs(r); len(got) != 2 {
		t.Fatalf("not_types filter: %v", got)
	}
	if got := searchIDs(alice.Must(t, 200, "POST", "search", searchBody("walrus", map[string]any{"filter": map[string]any{"rooms": []string{"!other:localhost"}}}))); len(got) != 0 {
		t.Fatalf("rooms filter: %v", got)
	}

	// Context, profiles, state, groups.
	bob.Must(t, 200, "PUT", "profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob the Walrus"})
	r = alice.Must(t, 200, "POST", "search", searchBody("sings", map[string]any{
		"event_context": map[string]any{"before_limit": 1, "after_limit": 2, "include_profile": true},
		"include_state": true, "groupings": map[string]any{"group_by": []map[string]string{{"key": "room_id"}, {"key": "sender"}}}}))
	res := r.Get("search_categories.room_events.results.0")
	if res.Get("context.events_after.0.event_id").String() != m2 || res.Get("context.events_after.#").Int() != 2 || res.Get("context.events_before.#").Int() != 1 ||
		res.Get("context.start").String() == "" || res.Get("context.end").String() == "" {
		t.Fatalf("context: %s", res.Raw)
	}
	if res.Get("context.profile_info."+escapeGJSON(alice.UserID)).Exists() == false || !res.Get("context.profile_info."+escapeGJSON(bob.UserID)).Exists() {
		t.Fatalf("profile_info: %s", res.Get("context.profile_info").Raw)
	}
	rc := r.Get("search_categories.room_events")
	if !rc.Get("state."+escapeGJSON(room)).IsArray() || rc.Get("groups.room_id."+escapeGJSON(room)+".results.0").String() != m1 ||
		rc.Get("groups.sender."+escapeGJSON(alice.UserID)+".results.0").String() != m1 {
		t.Fatalf("state and groups: %s", rc.Raw)
	}

	// Redacted events leave the index.
	alice.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(m1)+"/s1", map[string]any{})
	if got := searchIDs(alice.Must(t, 200, "POST", "search", searchBody("sings", nil))); len(got) != 0 {
		t.Fatalf("redacted event found: %v", got)
	}

	// Errors.
	alice.MustErr(t, 400, "M_MISSING_PARAM", "POST", "search", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{}}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "search", searchBody("x", map[string]any{"order_by": "loudest"}))
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "search", searchBody("x", map[string]any{"groupings": map[string]any{"group_by": []map[string]string{{"key": "type"}}}}))
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "search", searchBody("x", map[string]any{"filter": map[string]any{"limit": "many"}}))
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "search", searchBody("x", map[string]any{"keys": "content.body"}))
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "POST", "search", searchBody("x", nil))
	if r := alice.Must(t, 200, "POST", "search", searchBody("?!", nil)); r.Get("search_categories.room_events.count").Int() != 0 {
		t.Fatalf("no words: %s", r)
	}
}

func escapeGJSON(s string) string {
	out := ""
	for _, c := range s {
		if c == '.' || c == '*' || c == '?' || c == '#' || c == '@' || c == '!' || c == '|' {
			out += `\`
		}
		out += string(c)
	}
	return out
}

// Search shows only what history visibility shows, in joined rooms, and nothing from
// ignored users.
func TestSearchVisibility(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "joined"}}}})
	early := alice.Send(t, room, "narwhal early")
	bob.Join(t, room)
	late := alice.Send(t, room, "narwhal late")
	if got := searchIDs(bob.Must(t, 200, "POST", "search", searchBody("narwhal", nil))); !slices.Equal(got, []string{late}) {
		t.Fatalf("joined history: %v (early %s)", got, early)
	}
	// Bob ignores alice.
	bob.Must(t, 200, "PUT", "user/"+url.PathEscape(bob.UserID)+"/account_data/m.ignored_user_list", map[string]any{"ignored_users": map[string]any{alice.UserID: map[string]any{}}})
	if got := searchIDs(bob.Must(t, 200, "POST", "search", searchBody("narwhal", nil))); len(got) != 0 {
		t.Fatalf("ignored user's messages: %v", got)
	}
	// Rooms the searcher left, and rooms never joined, are not searched.
	carol := s.Register(t, "")
	if got := searchIDs(carol.Must(t, 200, "POST", "search", searchBody("narwhal", nil))); len(got) != 0 {
		t.Fatalf("stranger: %v", got)
	}
	carol.Join(t, room)
	carol.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	if r := carol.Must(t, 200, "POST", "search", searchBody("narwhal", nil)); len(searchIDs(r)) != 0 || r.Get("search_categories.room_events.count").Int() != 0 {
		t.Fatalf("left room: %s", r)
	}
	// Many hidden matches before a visible one: the search reads on to find it.
	dave := s.Register(t, "")
	for i := 0; i < 30; i++ {
		alice.Send(t, room, fmt.Sprintf("narwhal %d", i))
	}
	dave.Join(t, room)
	last := alice.Send(t, room, "narwhal for dave")
	r := dave.Must(t, 200, "POST", "search", searchBody("narwhal", map[string]any{"order_by": "recent", "filter": map[string]any{"limit": 1}}))
	if got := searchIDs(r); !slices.Equal(got, []string{last}) {
		t.Fatalf("dave: %v", got)
	}
	if r := dave.Must(t, 200, "POST", "search", searchBody("narwhal", map[string]any{"order_by": "rank"})); len(searchIDs(r)) != 1 || r.Get("search_categories.room_events.next_batch").Exists() {
		t.Fatalf("dave by rank: %s", r)
	}
}
