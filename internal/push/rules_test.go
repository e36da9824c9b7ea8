package push

import (
	"encoding/json/jsontext"
	"slices"
	"testing"
)

func ids(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

// A stored document from an older release (a default rule missing, one no longer defined,
// a user rule, a changed default) loads onto today's defaults, keeping the user's choices.
func TestLoadMergesStoredRulesOntoCurrentDefaults(t *testing.T) {
	stored := `{"global":{
		"override":[
			{"rule_id":".m.rule.master","default":true,"enabled":true,"actions":[]},
			{"rule_id":"mine","default":false,"enabled":true,"conditions":[],"actions":["notify"]},
			{"rule_id":".m.rule.retired","default":true,"enabled":true,"conditions":[],"actions":[]}
		],
		"content":[],"room":[],"sender":[],
		"underride":[{"rule_id":".m.rule.message","default":true,"enabled":false,"conditions":[],"actions":[]}]}}`
	rs := Load([]byte(stored), "@a:x")
	want := append([]string{".m.rule.master", "mine"}, ids(Defaults("@a:x").Override)[1:]...)
	if got := ids(rs.Override); !slices.Equal(got, want) {
		t.Fatalf("override:\n got %v\nwant %v", got, want)
	}
	if !rs.Override[0].Enabled {
		t.Fatal("the user's master switch was lost")
	}
	msg, _ := rs.Find(Underride, ".m.rule.message")
	if msg.Enabled || len(msg.Actions) != 0 || len(msg.Conditions) != 1 {
		t.Fatalf("changed default: %+v", msg)
	}
	if len(rs.Underride) != len(Defaults("@a:x").Underride) {
		t.Fatalf("underride: %v", ids(rs.Underride))
	}
	// Garbage falls back to the defaults.
	if got := Load([]byte(`{"global":7}`), "@a:x"); !slices.Equal(ids(got.Override), ids(Defaults("@a:x").Override)) {
		t.Fatalf("garbage: %v", ids(got.Override))
	}
}

func TestPutPlacesRules(t *testing.T) {
	rs := Defaults("@a:x")
	body := NewRule{Actions: []jsontext.Value{}}
	for _, step := range []struct{ id, before, after string }{
		{"b", "", ""}, {"a", "", ""}, {"c", "", "b"}, {"x", "a", ""}, {"b", "x", ""},
	} {
		if err := Put(&rs, Room, step.id, body, step.before, step.after); err != nil {
			t.Fatalf("put %s: %v", step.id, err)
		}
	}
	if got := ids(rs.Room); !slices.Equal(got, []string{"b", "x", "a", "c"}) {
		t.Fatalf("room order: %v", got)
	}
	if err := Put(&rs, Room, "y", body, "missing", ""); err == nil {
		t.Fatal("unknown before accepted")
	}
	if err := Put(&rs, Underride, "u", body, "", ""); err != nil || rs.Underride[0].RuleID != "u" {
		t.Fatalf("underride: %v %v", err, ids(rs.Underride))
	}
	if err := Put(&rs, Override, "o", body, "", ""); err != nil || rs.Override[1].RuleID != "o" {
		t.Fatalf("override: %v %v", err, ids(rs.Override))
	}
	if err := Delete(&rs, Override, ".m.rule.master"); err == nil {
		t.Fatal("deleted a default rule")
	}
}

// A room upgrade copies the user's enabled rules about the old room to the new one: the
// room rule and override/underride rules matching its room_id; others stay as they are.
func TestCopyRoomRules(t *testing.T) {
	rs := Defaults("@a:x")
	notify := []jsontext.Value{jsontext.Value(`"notify"`)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(Put(&rs, Room, "!old:x", NewRule{Actions: notify}, "", ""))
	must(Put(&rs, Room, "!other:x", NewRule{Actions: notify}, "", ""))
	must(Put(&rs, Override, "quiet", NewRule{Actions: []jsontext.Value{}, Conditions: []jsontext.Value{
		jsontext.Value(`{"kind":"event_match","key":"room_id","pattern":"!old:x"}`),
		jsontext.Value(`{"kind":"event_match","key":"type","pattern":"m.room.message"}`),
	}}, "", ""))
	must(Put(&rs, Underride, "off", NewRule{Actions: notify, Conditions: []jsontext.Value{
		jsontext.Value(`{"kind":"event_match","key":"room_id","pattern":"!old:x"}`)}}, "", ""))
	rs.Underride[0].Enabled = false // disabled rules are not copied
	if !CopyRoomRules(&rs, "!old:x", "!new:x") {
		t.Fatal("nothing copied")
	}
	if got := ids(rs.Room); !slices.Equal(got, []string{"!new:x", "!other:x", "!old:x"}) {
		t.Errorf("room rules %v", got)
	}
	r, ok := rs.Find(Override, "!new:x")
	if !ok || len(r.Conditions) != 2 || string(r.Conditions[0]) != `{"key":"room_id","kind":"event_match","pattern":"!new:x"}` || len(r.Actions) != 0 {
		t.Errorf("override copy: %+v", r)
	}
	if _, ok := rs.Find(Override, "quiet"); !ok {
		t.Error("the original rule must stay")
	}
	if _, ok := rs.Find(Underride, "!new:x"); ok {
		t.Error("a disabled rule was copied")
	}
	if CopyRoomRules(&rs, "!none:x", "!new2:x") {
		t.Error("copied rules of a room with none")
	}
}
