package client_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

func ruleIDs(r hstest.Response, path string) []string {
	var out []string
	for _, rule := range r.Get(path).Array() {
		out = append(out, rule.Get("rule_id").String())
	}
	return out
}

func TestPushRulesDefaultsAndEdits(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")

	all := alice.Must(t, 200, "GET", "pushrules/", nil)
	override := ruleIDs(all, "global.override")
	if len(override) == 0 || override[0] != ".m.rule.master" || all.Get("global.override.0.enabled").Bool() {
		t.Fatalf("override rules: %v", override)
	}
	if got := ruleIDs(all, "global.underride"); len(got) != 5 || got[3] != ".m.rule.message" {
		t.Fatalf("underride rules: %v", got)
	}
	// The invite and mention rules name the user.
	invite := alice.Must(t, 200, "GET", "pushrules/global/override/.m.rule.invite_for_me", nil)
	if invite.Get("conditions.2.pattern").String() != alice.UserID || !invite.Get("default").Bool() {
		t.Fatalf("invite rule: %s", invite)
	}
	name := alice.Must(t, 200, "GET", "pushrules/global/content/", nil)
	if localpart := strings.TrimPrefix(strings.Split(alice.UserID, ":")[0], "@"); name.Get("0.rule_id").String() != ".m.rule.contains_user_name" ||
		name.Get("0.pattern").String() != localpart || name.Get("0.conditions").Exists() {
		t.Fatalf("content rules: %s", name)
	}

	// An initial /sync carries the rules; an incremental one carries them when they change.
	first := alice.Must(t, 200, "GET", "sync", nil)
	if !hasAccountData(first, "m.push_rules") {
		t.Fatalf("initial sync lacks m.push_rules: %s", first.Get("account_data").Raw)
	}
	since := first.Get("next_batch").String()

	alice.Must(t, 200, "PUT", "pushrules/global/room/"+url.PathEscape("!quiet:localhost"), map[string]any{"actions": []any{}})
	alice.Must(t, 200, "PUT", "pushrules/global/override/first", map[string]any{
		"actions":    []any{"notify", map[string]any{"set_tweak": "highlight"}},
		"conditions": []any{map[string]any{"kind": "event_match", "key": "content.body", "pattern": "alert*"}},
	})
	alice.Must(t, 200, "PUT", "pushrules/global/override/second?after=first", map[string]any{"actions": []any{"notify"}})
	alice.Must(t, 200, "PUT", "pushrules/global/override/zeroth?before=first", map[string]any{"actions": []any{"notify"}})
	if got := ruleIDs(alice.Must(t, 200, "GET", "pushrules/", nil), "global.override")[:5]; got[0] != ".m.rule.master" ||
		got[1] != "zeroth" || got[2] != "first" || got[3] != "second" || got[4] != ".m.rule.suppress_notices" {
		t.Fatalf("order after inserts: %v", got)
	}
	rule := alice.Must(t, 200, "GET", "pushrules/global/override/first", nil)
	if rule.Get("default").Bool() || !rule.Get("enabled").Bool() || rule.Get("conditions.0.pattern").String() != "alert*" {
		t.Fatalf("user rule: %s", rule)
	}

	// Enabled and actions, for user and default rules.
	alice.Must(t, 200, "PUT", "pushrules/global/override/first/enabled", map[string]any{"enabled": false})
	if alice.Must(t, 200, "GET", "pushrules/global/override/first/enabled", nil).Get("enabled").Bool() {
		t.Fatal("rule still enabled")
	}
	alice.Must(t, 200, "PUT", "pushrules/global/override/.m.rule.master/enabled", map[string]any{"enabled": true})
	alice.Must(t, 200, "PUT", "pushrules/global/underride/.m.rule.message/actions", map[string]any{"actions": []any{}})
	if got := alice.Must(t, 200, "GET", "pushrules/global/underride/.m.rule.message/actions", nil).Get("actions").Raw; got != "[]" {
		t.Fatalf("default rule actions: %s", got)
	}
	// Replacing a rule keeps its place and its enabled flag.
	alice.Must(t, 200, "PUT", "pushrules/global/override/first", map[string]any{"actions": []any{"notify"}})
	if got := ruleIDs(alice.Must(t, 200, "GET", "pushrules/", nil), "global.override")[:4]; got[2] != "first" {
		t.Fatalf("order after replace: %v", got)
	}
	if alice.Must(t, 200, "GET", "pushrules/global/override/first", nil).Get("enabled").Bool() {
		t.Fatal("replacing a rule enabled it")
	}

	incr := alice.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	var synced string
	for _, e := range incr.Get("account_data.events").Array() {
		if e.Get("type").String() == "m.push_rules" {
			synced = e.Get("content").Raw
		}
	}
	if synced == "" {
		t.Fatalf("incremental sync lacks the changed rules: %s", incr.Get("account_data").Raw)
	}
	syncedRules := hstest.Response{Body: []byte(synced)}
	if got := alice.Must(t, 200, "GET", "pushrules/", nil); got.Get("global").Raw != syncedRules.Get("global").Raw {
		t.Fatalf("sync and GET disagree:\n%s\n%s", synced, got.Get("global").Raw)
	}

	// Deleting: user rules go, default rules cannot.
	alice.Must(t, 200, "DELETE", "pushrules/global/override/second", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "pushrules/global/override/second", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "DELETE", "pushrules/global/override/second", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "DELETE", "pushrules/global/override/.m.rule.master", nil)
	alice.Must(t, 200, "GET", "pushrules/global/override/.m.rule.master", nil)
	// Another user's rules are untouched.
	bob := s.Register(t, "")
	if got := bob.Must(t, 200, "GET", "pushrules/global/override/.m.rule.master/enabled", nil); got.Get("enabled").Bool() {
		t.Fatal("alice's change reached bob")
	}
	// m.push_rules is not writable as plain account data.
	alice.MustErr(t, 405, "M_BAD_JSON", "PUT", "user/"+url.PathEscape(alice.UserID)+"/account_data/m.push_rules", map[string]any{"global": map[string]any{}})
}

func hasAccountData(r hstest.Response, typ string) bool {
	for _, e := range r.Get("account_data.events").Array() {
		if e.Get("type").String() == typ {
			return true
		}
	}
	return false
}

func TestPushRulesBadRequests(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	before := alice.Must(t, 200, "GET", "pushrules/", nil).Body

	bad := []struct {
		method, path string
		body         any
		status       int
		errcode      string
	}{
		{"PUT", "pushrules/", map[string]any{}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/not_a_scope/room/x", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global", map[string]any{}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/room", map[string]any{}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/room/", map[string]any{}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/not_a_kind/foo", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/room/" + url.PathEscape(`a\b`), map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/override/.m.rule.mine", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/override/my_id", map[string]any{}, 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/underride/my_id", map[string]any{"actions": []any{}, "conditions": []any{map[string]any{}}}, 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/underride/my_id", map[string]any{"actions": []any{}, "conditions": []any{map[string]any{"kind": "event_match"}}}, 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/content/my_id", map[string]any{"actions": []any{}}, 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/room/r", map[string]any{"actions": []any{"not_an_action"}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/room/r", map[string]any{"actions": []any{42}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/room/r", map[string]any{"actions": "notify"}, 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/room/r", []byte(`["not an object"]`), 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/room/r", "{not json", 400, "M_NOT_JSON"},
		{"PUT", "pushrules/global/room/r?before=nope", map[string]any{"actions": []any{}}, 400, "M_UNKNOWN"},
		{"PUT", "pushrules/global/override/r?after=.m.rule.master", map[string]any{"actions": []any{}}, 400, "M_UNKNOWN"},
		{"PUT", "pushrules/global/override/.m.rule.master/not_an_attr", map[string]any{"enabled": true}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/override/.m.rule.master/enabled", map[string]any{"enabled": "yes"}, 400, "M_BAD_JSON"},
		{"PUT", "pushrules/global/override/.m.rule.master/enabled", map[string]any{}, 400, "M_MISSING_PARAM"},
		{"PUT", "pushrules/global/override/.m.rule.master/actions", map[string]any{"actions": []any{"bogus"}}, 400, "M_INVALID_PARAM"},
		{"PUT", "pushrules/global/override/.m.rule.unknown/enabled", map[string]any{"enabled": true}, 404, "M_NOT_FOUND"},
		{"PUT", "pushrules/global/override/unknown/actions", map[string]any{"actions": []any{}}, 404, "M_NOT_FOUND"},
		{"GET", "pushrules", nil, 404, "M_UNRECOGNIZED"},
		{"GET", "pushrules/global", nil, 400, "M_INVALID_PARAM"},
		{"GET", "pushrules/global/room", nil, 400, "M_INVALID_PARAM"},
		{"GET", "pushrules/not_a_scope/", nil, 400, "M_INVALID_PARAM"},
		{"GET", "pushrules/global/not_a_kind/", nil, 400, "M_INVALID_PARAM"},
		{"GET", "pushrules/global/override/.m.rule.master/not_an_attr", nil, 400, "M_INVALID_PARAM"},
		{"GET", "pushrules/global/override/not_a_rule_id", nil, 404, "M_NOT_FOUND"},
		{"DELETE", "pushrules/global/override/.m.rule.master/enabled", nil, 400, "M_INVALID_PARAM"},
	}
	for _, b := range bad {
		alice.MustErr(t, b.status, b.errcode, b.method, b.path, b.body)
	}
	if after := alice.Must(t, 200, "GET", "pushrules/", nil).Body; string(after) != string(before) {
		t.Fatalf("rejected requests changed the rules:\n%s\n%s", before, after)
	}
	guest := s.Guest(t)
	guest.MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "pushrules/", nil)
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", "pushrules/", nil)
}

// Concurrent edits by one user all land: each reads and writes inside one transaction.
func TestPushRulesConcurrentEdits(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	const n = 20
	errs := make(chan hstest.Response, n)
	for i := range n {
		go func() {
			errs <- alice.DoCtx(context.Background(), t, "PUT", "pushrules/global/room/"+url.PathEscape("!r"+string(rune('a'+i))+":localhost"), map[string]any{"actions": []any{}})
		}()
	}
	for range n {
		if r := <-errs; r.Status != 200 {
			t.Fatalf("PUT: %s", r)
		}
	}
	if got := ruleIDs(alice.Must(t, 200, "GET", "pushrules/", nil), "global.room"); len(got) != n {
		t.Fatalf("%d room rules after %d concurrent PUTs: %v", len(got), n, got)
	}
}
