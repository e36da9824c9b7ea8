package filter

import (
	"reflect"
	"testing"
)

func TestParseAndAllow(t *testing.T) {
	f, err := Parse([]byte(`{"event_fields":["content.body","type"],"presence":{"types":[]},"room":{"rooms":["!a"],"not_rooms":["!b"],"include_leave":true,
		"timeline":{"limit":5,"types":["m.room.*"],"not_types":["m.room.member"],"not_senders":["@spam:hs"],"contains_url":false,"lazy_load_members":true},
		"state":{"types":["m.room.name"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tl := &f.Room.Timeline
	cases := []struct {
		room, typ, sender string
		url               bool
		want              bool
	}{
		{"!a", "m.room.message", "@u:hs", false, true},
		{"!a", "m.room.member", "@u:hs", false, false},
		{"!a", "m.reaction", "@u:hs", false, false},
		{"!a", "m.room.message", "@spam:hs", false, false},
		{"!a", "m.room.message", "@u:hs", true, false},
	}
	for _, c := range cases {
		if got := tl.Allows(c.room, c.typ, c.sender, c.url); got != c.want {
			t.Errorf("Allows(%q,%q,%q,%v) = %v", c.room, c.typ, c.sender, c.url, got)
		}
	}
	if !f.Room.AllowsRoom("!a") || f.Room.AllowsRoom("!b") || f.Room.AllowsRoom("!c") {
		t.Error("room filter")
	}
	if f.Presence.Allows("m.presence", "@u:hs") {
		t.Error("an empty types list matches nothing")
	}
	if !f.AccountData.Allows("anything", "@u:hs") {
		t.Error("an absent filter matches everything")
	}
	if tl.Limit != 5 || !tl.LazyLoadMembers || !f.Room.IncludeLeave {
		t.Errorf("fields: %+v", tl)
	}
	ev := f.ApplyEventFields([]byte(`{"type":"m.room.message","content":{"body":"hi","msgtype":"m.text"},"sender":"@u:hs"}`))
	if string(ev) != `{"content":{"body":"hi"},"type":"m.room.message"}` {
		t.Errorf("event_fields: %s", ev)
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		`nope`:                                            "M_NOT_JSON",
		`[]`:                                              "M_BAD_JSON",
		`{"room":{"timeline":{"limit":"5"}}}`:             "M_BAD_JSON",
		`{"room":{"timeline":{"limit":1.5}}}`:             "M_BAD_JSON",
		`{"room":{"timeline":{"limit":-1}}}`:              "M_INVALID_PARAM",
		`{"room":{"timeline":{"types":"x"}}}`:             "M_BAD_JSON",
		`{"room":{"timeline":{"types":[1]}}}`:             "M_BAD_JSON",
		`{"event_format":"xml"}`:                          "M_BAD_JSON",
		`{"room":{"state":{"lazy_load_members":"true"}}}`: "M_BAD_JSON",
		`{"room":[]}`:                                     "M_BAD_JSON",
		// Rooms and senders must be room and user IDs (sytest 80torture/10filters.pl).
		`{"room":{"timeline":{"rooms":["not_a_room_id"]}}}`:     "M_BAD_JSON",
		`{"room":{"timeline":{"senders":["not_a_sender_id"]}}}`: "M_BAD_JSON",
		`{"room":{"not_rooms":["!"]}}`:                          "M_BAD_JSON",
		`{"room":{"rooms":["!a:"]}}`:                            "M_BAD_JSON",
		`{"presence":{"not_senders":["@:x"]}}`:                  "M_BAD_JSON",
		`{"account_data":{"senders":["bob"]}}`:                  "M_BAD_JSON",
		`{"room":{"state":{"not_senders":["@a"]}}}`:             "M_BAD_JSON",
	}
	for in, code := range cases {
		_, err := Parse([]byte(in))
		fe, ok := err.(*Error)
		if !ok || fe.Code != code {
			t.Errorf("Parse(%s) = %v, want %s", in, err, code)
		}
	}
	// Both forms of room ID, and user IDs with historical characters, are fine.
	if _, err := Parse([]byte(`{"room":{"rooms":["!a:x.org","!AbC-_0"],"timeline":{"senders":["@Old_User:x.org:8448"]}}}`)); err != nil {
		t.Error(err)
	}
	// null is absent; unknown keys are ignored.
	if _, err := Parse([]byte(`{"room":null,"future_key":{"x":1}}`)); err != nil {
		t.Error(err)
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{{"m.*", "m.room.message", true}, {"*.message", "m.room.message", true}, {"m.*.message", "m.room.message", true},
		{"m.room", "m.room.message", false}, {"*", "", true}, {"a*b*c", "abc", true}, {"a*b*c", "acb", false}} {
		if Match(c.p, c.s) != c.want {
			t.Errorf("Match(%q, %q) != %v", c.p, c.s, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"room":{"timeline":{"limit":10,"types":["m.*"]}}}`, `{"presence":{"types":[]}}`,
		`{"event_fields":["content.body"]}`, `{"room":{"rooms":[],"state":{"lazy_load_members":true}}}`, `[`, `{"room":{"timeline":{"limit":0}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		flt, err := Parse(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of the wrong type: %v", err)
			}
			return
		}
		again, err := Parse(flt.JSON())
		if err != nil {
			t.Fatalf("re-encoded filter %s does not parse: %v", flt.JSON(), err)
		}
		if !reflect.DeepEqual(flt, again) {
			t.Fatalf("round trip changed the filter:\n%+v\n%+v", flt, again)
		}
		flt.Room.Timeline.Allows("!r", "m.room.message", "@u", false)
		flt.ApplyEventFields([]byte(`{"content":{"a.b":1}}`))
	})
}
