package rooms

import (
	"encoding/json/jsontext"
	"testing"

	"porthole/internal/mxerr"
)

func TestIdentifiers(t *testing.T) {
	for in, want := range map[string]bool{"!abc:hs": true, "!abc": true, "!": false, "abc": false, "!a b:hs": false, "": false} {
		if ValidRoomID(in) != want {
			t.Errorf("ValidRoomID(%q) != %v", in, want)
		}
	}
	for in, want := range map[string]bool{"@a:hs": true, "@a:hs:8448": true, "a:hs": false, "@:hs": false, "@a": false, "": false} {
		if ValidUserID(in) != want {
			t.Errorf("ValidUserID(%q) != %v", in, want)
		}
	}
	for in, want := range map[string]bool{"#a:hs": true, "#:hs": false, "#a": false, "a:hs": false, "#a b:hs": false, "%a:hs": false} {
		if ValidAlias(in) != want {
			t.Errorf("ValidAlias(%q) != %v", in, want)
		}
	}
}

func TestCanonicalContent(t *testing.T) {
	good := map[string]string{`{"b":1,"a":[true,null]}`: `{"a":[true,null],"b":1}`, ``: `{}`}
	for in, want := range good {
		got, err := canonicalContent(jsontext.Value(in))
		if err != nil || string(got) != want {
			t.Errorf("canonicalContent(%s) = %s, %v", in, got, err)
		}
	}
	for _, bad := range []string{`{"a":1.5}`, `{"a":9007199254740993}`, `[]`, `"x"`, `{"a":-9007199254740993}`} {
		if _, err := canonicalContent(jsontext.Value(bad)); err == nil {
			t.Errorf("canonicalContent(%s) accepted", bad)
		} else if e, _ := mxerr.As(err); e == nil || e.Code != "M_BAD_JSON" {
			t.Errorf("canonicalContent(%s): %v", bad, err)
		}
	}
}

func FuzzIdentifiers(f *testing.F) {
	for _, s := range []string{"!a:hs", "@u:hs", "#a:hs", "", "@", "!\x00:x", "@a:[::1]:8448"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidRoomID(s) && (len(s) > 255 || s[0] != '!') {
			t.Fatalf("bad room ID accepted: %q", s)
		}
		if ValidAlias(s) && (len(s) > 255 || s[0] != '#') {
			t.Fatalf("bad alias accepted: %q", s)
		}
		if ValidUserID(s) && (len(s) > 255 || s[0] != '@') {
			t.Fatalf("bad user ID accepted: %q", s)
		}
	})
}

func FuzzCanonicalContent(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"n":1.5}`, `{"n":[1,2,{"x":null}]}`, `{"u":"\u00e9"}`, `{"big":12345678901234567890}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := canonicalContent(jsontext.Value(data))
		if err != nil {
			if e, ok := mxerr.As(err); !ok || e.Code != "M_BAD_JSON" {
				t.Fatalf("%q: %v", data, err)
			}
			return
		}
		// Canonical JSON is a fixed point.
		again, err := canonicalContent(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not canonical: %s -> %s (%v)", out, again, err)
		}
	})
}
