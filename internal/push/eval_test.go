package push

import (
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"fmt"
	"strings"
	"testing"
)

const alice = "@alice:example.org"

func mustEvent(t testing.TB, raw string, members int) *Event {
	t.Helper()
	ev, err := NewEvent([]byte(raw), members)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func compiled(t testing.TB, raw string) condition {
	t.Helper()
	if !jsontext.Value(raw).IsValid() {
		t.Fatalf("bad condition JSON %s", raw)
	}
	return compileCondition(jsontext.Value(raw))
}

func TestConditions(t *testing.T) {
	msg := func(content string) string {
		return `{"type":"m.room.message","room_id":"!r:example.org","sender":"@bob:example.org","content":` + content + `}`
	}
	cases := []struct {
		name  string
		cond  string
		event string
		want  bool
	}{
		// event_match: the whole value, case-insensitively, strings only (the spec's examples).
		{"glob whole", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, `{"type":"m.room.topic","content":{"topic":"Lunch plans"}}`, true},
		{"glob upper", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, `{"type":"m.room.topic","content":{"topic":"LUNCH"}}`, true},
		{"glob leading space", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, `{"type":"m.room.topic","content":{"topic":" lunch"}}`, false},
		{"glob ? needs a char", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, `{"type":"m.room.topic","content":{"topic":"lunc"}}`, false},
		{"glob null", `{"kind":"event_match","key":"content.topic","pattern":"*"}`, `{"type":"m.room.topic","content":{"topic":null}}`, false},
		{"glob absent", `{"kind":"event_match","key":"content.topic","pattern":"*"}`, `{"type":"m.room.topic","content":{}}`, false},
		{"literal is not a substring", `{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}`, msg(`{"msgtype":"xm.noticex"}`), false},
		{"literal exact", `{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}`, msg(`{"msgtype":"M.Notice"}`), true},
		{"number is not a string", `{"kind":"event_match","key":"content.n","pattern":"1"}`, msg(`{"n":1}`), false},
		{"type", `{"kind":"event_match","key":"type","pattern":"m.room.*"}`, msg(`{}`), true},
		// content.body matches words.
		{"body word", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, msg(`{"body":"An example event."}`), true},
		{"body start and end", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, msg(`{"body":"exple"}`), true},
		{"body across words", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, msg(`{"body":"An exciting triple-whammy"}`), true},
		{"body inside a word", `{"kind":"event_match","key":"content.body","pattern":"cake"}`, msg(`{"body":"pancakes"}`), false},
		{"body @room", `{"kind":"event_match","key":"content.body","pattern":"@room"}`, msg(`{"body":"hey @room!"}`), true},
		{"body @room alone", `{"kind":"event_match","key":"content.body","pattern":"@room"}`, msg(`{"body":"@room"}`), true},
		{"body @roomy", `{"kind":"event_match","key":"content.body","pattern":"@room"}`, msg(`{"body":"@roomy"}`), false},
		// Escaped keys (the spec's appendix).
		{"escaped dot", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"m.room.create","content":{"m.federate":true}}`, true},
		{"string true", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"m.room.create","content":{"m.federate":"true"}}`, false},
		{"no casting", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"m.room.create","content":{"m.federate":1}}`, false},
		{"unescaped does not match", `{"kind":"event_property_is","key":"content.m.federate","value":true}`, `{"type":"m.room.create","content":{"m.federate":true}}`, false},
		{"backslash key", `{"kind":"event_property_is","key":"content.m\\\\foo","value":"x"}`, msg(`{"m\\foo":"x"}`), true},
		{"other escape is literal", `{"kind":"event_property_is","key":"content.m\\xfoo","value":"x"}`, msg(`{"m\\xfoo":"x"}`), true},
		{"null value", `{"kind":"event_property_is","key":"content.x","value":null}`, msg(`{"x":null}`), true},
		{"null vs absent", `{"kind":"event_property_is","key":"content.x","value":null}`, msg(`{}`), false},
		{"integer", `{"kind":"event_property_is","key":"content.x","value":3}`, msg(`{"x":3}`), true},
		{"compound value never matches", `{"kind":"event_property_is","key":"content.x","value":{"a":1}}`, msg(`{"x":{"a":1}}`), false},
		{"array is not a value", `{"kind":"event_property_is","key":"content.x","value":"a"}`, msg(`{"x":["a"]}`), false},
		// event_property_contains.
		{"contains", `{"kind":"event_property_contains","key":"content.alt_aliases","value":"#myroom:example.com"}`, `{"type":"m.room.canonical_alias","content":{"alt_aliases":["#somewhere:example.org","#myroom:example.com"]}}`, true},
		{"contains partial", `{"kind":"event_property_contains","key":"content.alt_aliases","value":":example.com"}`, `{"type":"m.room.canonical_alias","content":{"alt_aliases":["#myroom:example.com"]}}`, false},
		{"contains not a list", `{"kind":"event_property_contains","key":"content.alt_aliases","value":"a"}`, msg(`{"alt_aliases":"a"}`), false},
		{"contains skips compound", `{"kind":"event_property_contains","key":"content.l","value":1}`, msg(`{"l":[{"a":1},1]}`), true},
		// room_member_count.
		{"count ==", `{"kind":"room_member_count","is":"2"}`, msg(`{}`), true},
		{"count <", `{"kind":"room_member_count","is":"<2"}`, msg(`{}`), false},
		{"count <=", `{"kind":"room_member_count","is":"<=2"}`, msg(`{}`), true},
		{"count >", `{"kind":"room_member_count","is":">1"}`, msg(`{}`), true},
		{"count >=", `{"kind":"room_member_count","is":">=3"}`, msg(`{}`), false},
		{"count bad", `{"kind":"room_member_count","is":"=>2"}`, msg(`{}`), false},
		// Unknown kinds never match.
		{"unknown kind", `{"kind":"org.example.whatever"}`, msg(`{}`), false},
		{"missing key", `{"kind":"event_match","pattern":"x"}`, msg(`{}`), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := mustEvent(t, c.event, 2)
			if got := compiled(t, c.cond).match(ev, &Member{UserID: alice}); got != c.want {
				t.Errorf("%s on %s = %v, want %v", c.cond, c.event, got, c.want)
			}
		})
	}
}

func TestSenderNotificationPermission(t *testing.T) {
	c := compiled(t, `{"kind":"sender_notification_permission","key":"room"}`)
	ev := mustEvent(t, `{"type":"m.room.message","sender":"@bob:x","content":{}}`, 3)
	pl := []byte(`{"users":{"@bob:x":50,"@carol:x":10},"notifications":{"room":20,"custom":80}}`)
	ev.PowerLevels = func() (int, map[string]int) { return SenderLevels(pl, nil, "@creator:x", "@bob:x") }
	if !c.match(ev, &Member{UserID: alice}) {
		t.Error("bob (50) may @room at 20")
	}
	ev2 := mustEvent(t, `{"type":"m.room.message","sender":"@carol:x","content":{}}`, 3)
	ev2.PowerLevels = func() (int, map[string]int) { return SenderLevels(pl, nil, "@creator:x", "@carol:x") }
	if c.match(ev2, &Member{UserID: alice}) {
		t.Error("carol (10) may not @room at 20")
	}
	custom := compiled(t, `{"kind":"sender_notification_permission","key":"custom"}`)
	if custom.match(ev, &Member{UserID: alice}) {
		t.Error("bob (50) may not use a key needing 80")
	}
	// Unlisted keys need 50.
	other := compiled(t, `{"kind":"sender_notification_permission","key":"other"}`)
	if !other.match(ev, &Member{UserID: alice}) {
		t.Error("bob (50) may use an unlisted key (default 50)")
	}
	// Room v12: creators outrank everyone.
	ev3 := mustEvent(t, `{"type":"m.room.message","sender":"@creator:x","content":{}}`, 3)
	ev3.PowerLevels = func() (int, map[string]int) {
		return SenderLevels([]byte(`{"users":{},"notifications":{"room":1000}}`), []byte(`{"room_version":"12"}`), "@creator:x", "@creator:x")
	}
	if !c.match(ev3, &Member{UserID: alice}) {
		t.Error("a room v12 creator may always @room")
	}
}

func evalDefaults(t testing.TB, event string, members int, m Member) *Matched {
	t.Helper()
	return DefaultRules().Evaluate(mustEvent(t, event, members), &m)
}

func TestDefaultRules(t *testing.T) {
	bob := `"sender":"@bob:example.org","room_id":"!r:example.org"`
	pl := func(ev *Event) *Event {
		ev.PowerLevels = func() (int, map[string]int) { return 50, nil }
		return ev
	}
	cases := []struct {
		name      string
		event     string
		members   int
		display   string
		rule      string
		notify    bool
		highlight bool
	}{
		{"message in a group", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"hello"}}`, 5, "", ".m.rule.message", true, false},
		{"message in a DM", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"hello"}}`, 2, "", ".m.rule.room_one_to_one", true, false},
		{"encrypted DM", `{"type":"m.room.encrypted",` + bob + `,"content":{"ciphertext":"x"}}`, 2, "", ".m.rule.encrypted_room_one_to_one", true, false},
		{"encrypted group", `{"type":"m.room.encrypted",` + bob + `,"content":{"ciphertext":"x"}}`, 5, "", ".m.rule.encrypted", true, false},
		{"notice", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.notice","body":"alice"}}`, 5, "", ".m.rule.suppress_notices", false, false},
		{"user mention", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["@alice:example.org"]}}}`, 5, "", ".m.rule.is_user_mention", true, true},
		{"someone else's mention", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"hi alice","m.mentions":{"user_ids":["@carol:example.org"]}}}`, 5, "Alice", ".m.rule.message", true, false},
		{"legacy localpart", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"ask Alice, please"}}`, 5, "", ".m.rule.contains_user_name", true, true},
		{"legacy display name", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"where is wonder WOMAN?"}}`, 5, "Wonder Woman", ".m.rule.contains_display_name", true, true},
		{"display name inside a word", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"bobcat"}}`, 5, "bob", ".m.rule.message", true, false},
		{"legacy @room", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"@room lunch"}}`, 5, "", ".m.rule.roomnotif", true, true},
		{"room mention", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"lunch","m.mentions":{"room":true}}}`, 5, "", ".m.rule.is_room_mention", true, true},
		{"@room text with m.mentions", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"@room lunch","m.mentions":{}}}`, 5, "", ".m.rule.message", true, false},
		{"invite for me", `{"type":"m.room.member","state_key":"@alice:example.org",` + bob + `,"content":{"membership":"invite"}}`, 5, "", ".m.rule.invite_for_me", true, false},
		{"someone else's invite", `{"type":"m.room.member","state_key":"@carol:example.org",` + bob + `,"content":{"membership":"invite"}}`, 5, "", ".m.rule.member_event", false, false},
		{"reaction", `{"type":"m.reaction",` + bob + `,"content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}}`, 5, "", ".m.rule.reaction", false, false},
		{"edit", `{"type":"m.room.message",` + bob + `,"content":{"msgtype":"m.text","body":"* alice","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}}`, 5, "", ".m.rule.suppress_edits", false, false},
		{"tombstone", `{"type":"m.room.tombstone","state_key":"",` + bob + `,"content":{"body":"moved"}}`, 5, "", ".m.rule.tombstone", true, true},
		{"call", `{"type":"m.call.invite",` + bob + `,"content":{}}`, 5, "", ".m.rule.call", true, false},
		{"topic change", `{"type":"m.room.topic","state_key":"",` + bob + `,"content":{"topic":"x"}}`, 5, "", "", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := pl(mustEvent(t, c.event, c.members))
			m := DefaultRules().Evaluate(ev, &Member{UserID: alice, DisplayName: c.display})
			if c.rule == "" {
				if m != nil {
					t.Fatalf("matched %s, want none", m.RuleID)
				}
				return
			}
			if m == nil || m.RuleID != c.rule || m.Notify != c.notify || m.Highlight != c.highlight {
				t.Fatalf("got %+v, want %s notify=%v highlight=%v", m, c.rule, c.notify, c.highlight)
			}
		})
	}
}

func TestUserRules(t *testing.T) {
	rs := Defaults(alice)
	room := "!muted:example.org"
	if err := Put(&rs, Room, room, NewRule{Actions: []jsontext.Value{jsontext.Value(`"dont_notify"`)}}, "", ""); err != nil {
		t.Fatal(err)
	}
	pattern := "cake*"
	if err := Put(&rs, Content, "cake", NewRule{Pattern: &pattern, Actions: []jsontext.Value{jsontext.Value(`"notify"`), jsontext.Value(`{"set_tweak":"highlight","value":false}`), jsontext.Value(`{"set_tweak":"sound","value":5}`)}}, "", ""); err != nil {
		t.Fatal(err)
	}
	c := Compile(rs)
	muted := c.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"`+room+`","sender":"@bob:x","content":{"body":"hi"}}`, 5), &Member{UserID: alice})
	if muted == nil || muted.RuleID != room || muted.Notify || muted.Actions != "[]" {
		t.Errorf("muted room: %+v, want the room rule with empty actions", muted)
	}
	// A mention still highlights in a muted room: override rules come first.
	mention := c.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"`+room+`","sender":"@bob:x","content":{"body":"hi","m.mentions":{"user_ids":["`+alice+`"]}}}`, 5), &Member{UserID: alice})
	if mention == nil || mention.RuleID != ".m.rule.is_user_mention" {
		t.Errorf("mention in muted room: %+v", mention)
	}
	cake := c.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"!other:x","sender":"@bob:x","content":{"body":"Cakes for all"}}`, 5), &Member{UserID: alice})
	if cake == nil || cake.RuleID != "cake" || !cake.Notify || cake.Highlight {
		t.Errorf("keyword: %+v, want the content rule, notify, highlight false", cake)
	}
	// Disabling the master rule's opposite: enabling it silences everything.
	master, _ := rs.Find(Override, ".m.rule.master")
	master.Enabled = true
	if m := Compile(rs).Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"!other:x","sender":"@bob:x","content":{"body":"hi","m.mentions":{"user_ids":["`+alice+`"]}}}`, 5), &Member{UserID: alice}); m == nil || m.RuleID != ".m.rule.master" || m.Notify {
		t.Errorf("master rule: %+v", m)
	}
	// Rules stored for one user and compiled carry no one else's ID: the defaults are templated.
	bobRules := Compile(Load(nil, "@bob:x"))
	if m := bobRules.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"!r:x","sender":"@carol:x","content":{"body":"hi","m.mentions":{"user_ids":["@bob:x"]}}}`, 5), &Member{UserID: "@bob:x"}); m == nil || m.RuleID != ".m.rule.is_user_mention" {
		t.Errorf("bob's mention: %+v", m)
	}
}

func TestParseActions(t *testing.T) {
	cases := []struct {
		in              string
		notify, highlit bool
		canonical       string
	}{
		{`["notify"]`, true, false, `["notify"]`},
		{`["dont_notify"]`, false, false, `[]`},
		{`["notify","coalesce",{"set_tweak":"highlight"}]`, true, true, `["notify",{"set_tweak":"highlight"}]`},
		{`[{"value":false,"set_tweak":"highlight"}]`, false, false, `[{"set_tweak":"highlight","value":false}]`},
		{`[{"set_tweak":"sound","value":7}]`, false, false, `[{"set_tweak":"sound","value":7}]`},
	}
	for _, c := range cases {
		var actions []jsontext.Value
		if err := jsonUnmarshal(c.in, &actions); err != nil {
			t.Fatal(err)
		}
		n, h, canon := ParseActions(actions)
		if n != c.notify || h != c.highlit || canon != c.canonical {
			t.Errorf("%s: notify=%v highlight=%v %s, want %v %v %s", c.in, n, h, canon, c.notify, c.highlit, c.canonical)
		}
	}
}

// BenchmarkEvaluatePerMember is the cost of the push rules for one member of one event
// (the event is flattened once per event; see BenchmarkPrepareEvent), for the common cases.
func BenchmarkEvaluatePerMember(b *testing.B) {
	for _, c := range []struct{ name, event string }{
		{"message", `{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"msgtype":"m.text","body":"Shall we meet for lunch at noon tomorrow?"}}`},
		{"mention", `{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"msgtype":"m.text","body":"Alice: lunch?","m.mentions":{"user_ids":["@alice:x"]}}}`},
		{"reaction", `{"type":"m.reaction","room_id":"!r:x","sender":"@bob:x","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e","key":"👍"}}}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			ev := mustEvent(b, c.event, 1000)
			rules := DefaultRules()
			members := make([]Member, 1000)
			for i := range members {
				name := fmt.Sprintf("User %d", i)
				// As the room's memory hands them out: lower-cased names computed once.
				members[i] = Member{UserID: fmt.Sprintf("@user%d:x", i), DisplayName: name, LowerDisplayName: strings.ToLower(name)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rules.Evaluate(ev, &members[i%len(members)])
			}
		})
	}
}

func BenchmarkPrepareEvent(b *testing.B) {
	raw := []byte(`{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","origin_server_ts":1,"depth":10,"prev_events":["$a"],"auth_events":["$b","$c"],"hashes":{"sha256":"x"},"signatures":{"x":{"ed25519:a":"y"}},"content":{"msgtype":"m.text","body":"Shall we meet for lunch at noon tomorrow?"}}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := NewEvent(raw, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

func jsonUnmarshal(s string, v any) error { return jsonv2.Unmarshal([]byte(s), v) }
