package specschema

import (
	"strings"
	"testing"
)

func mustLoad(t *testing.T) *Spec {
	t.Helper()
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every response schema and event schema of the vendored spec compiles, so that no
// endpoint goes unchecked for a broken $ref.
func TestEverySchemaCompiles(t *testing.T) {
	s := mustLoad(t)
	n := 0
	for _, ep := range s.routes {
		for status, loc := range ep.responses {
			if loc == "" {
				continue
			}
			n++
			if _, err := s.schema(loc); err != nil {
				t.Errorf("%s %s %d: %v", ep.method, ep.template, status, err)
			}
		}
	}
	for typ, file := range s.eventTypes {
		if _, err := s.schema(baseURL + file); err != nil {
			t.Errorf("event %s: %v", typ, err)
		}
	}
	if n < 200 || len(s.eventTypes) < 50 {
		t.Fatalf("only %d response schemas and %d event schemas: is the spec copy complete?", n, len(s.eventTypes))
	}
}

func TestMatchPrefersLiteralSegments(t *testing.T) {
	s := mustLoad(t)
	for path, want := range map[string]string{
		"/_matrix/client/v3/rooms/!a:x/state":                "/_matrix/client/v3/rooms/{roomId}/state",
		"/_matrix/client/v3/rooms/!a:x/state/m.room.name/":   "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
		"/_matrix/client/r0/sync":                            "/_matrix/client/v3/sync",
		"/_matrix/client/api/v1/events":                      "/_matrix/client/v3/events",
		"/_matrix/client/v3/user/@u:x/rooms/!r:x/tags":       "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags",
		"/_matrix/client/v3/user/@u:x/account_data/m.direct": "/_matrix/client/v3/user/{userId}/account_data/{type}",
		"/_matrix/client/versions":                           "/_matrix/client/versions",
		"/_matrix/client/v3/pushrules/global/override/.m.x":  "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
	} {
		ep := s.match("GET", path)
		if ep == nil || ep.template != want {
			got := "nothing"
			if ep != nil {
				got = ep.template
			}
			t.Errorf("%s matched %s, want %s", path, got, want)
		}
	}
}

func TestCheckResponse(t *testing.T) {
	s := mustLoad(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		want               string // a substring of the one violation, or "" for none
	}{
		{"whoami ok", "GET", "/_matrix/client/v3/account/whoami", 200, `{"user_id":"@a:x","device_id":"D"}`, ""},
		{"whoami without user_id", "GET", "/_matrix/client/v3/account/whoami", 200, `{"device_id":"D"}`, "missing property 'user_id'"},
		{"null status_msg in presence event", "GET", "/_matrix/client/v3/sync", 200,
			`{"next_batch":"s1","presence":{"events":[{"type":"m.presence","sender":"@a:x","content":{"presence":"online","status_msg":null}}]}}`,
			"at /presence/events/0/content/status_msg"},
		{"null status_msg allowed by GET presence", "GET", "/_matrix/client/v3/presence/@a:x/status", 200, `{"presence":"online","status_msg":null}`, ""},
		{"timeline event without event_id", "GET", "/_matrix/client/v3/sync", 200,
			`{"next_batch":"s1","rooms":{"join":{"!r:x":{"timeline":{"events":[{"type":"m.room.message","sender":"@a:x","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}}]}}}}}`,
			"missing property 'event_id'"},
		{"member event content checked by type", "GET", "/_matrix/client/v3/rooms/!r:x/state", 200,
			`[{"type":"m.room.member","state_key":"@a:x","sender":"@a:x","event_id":"$e","origin_server_ts":1,"room_id":"!r:x","content":{"membership":"present"}}]`,
			"at /0/content/membership"},
		{"error body", "GET", "/_matrix/client/v3/rooms/!r:x/state", 403, `{"errcode":"M_FORBIDDEN","error":"no"}`, ""},
		{"error without errcode", "GET", "/_matrix/client/v3/nonsense", 404, `{"error":"no"}`, "missing property 'errcode'"},
		{"error errcode not a string", "POST", "/_matrix/client/v3/login", 403, `{"errcode":7}`, "at /errcode"},
		{"body not JSON", "GET", "/_matrix/client/v3/sync", 500, `oops`, "not JSON"},
		{"UIA 401 checked against auth response", "POST", "/_matrix/client/v3/register", 401, `{"flows":"dummy"}`, "at /flows"},
		{"UIA 401 ok", "POST", "/_matrix/client/v3/register", 401, `{"flows":[{"stages":["m.login.dummy"]}],"params":{},"session":"s"}`, ""},
		{"unlisted success status", "GET", "/_matrix/client/v3/account/whoami", 202, `{}`, "not a response"},
		{"outside the client API", "GET", "/metrics", 200, `not json`, ""},
		{"a media download is not JSON", "GET", "/_matrix/client/v1/media/download/localhost/abc", 200, "\x89PNG", ""},
		{"a media upload answer is", "POST", "/_matrix/media/v3/upload", 200, `{"content_uri":7}`, "at /content_uri"},
		{"a media error is JSON", "GET", "/_matrix/client/v1/media/download/localhost/abc", 404, `not found`, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.CheckResponse(tc.method, tc.path, tc.status, []byte(tc.body))
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("unexpected violations: %v", got)
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("no violation, want one with %q", tc.want)
			}
			for _, v := range got {
				if strings.Contains(v.String(), tc.want) {
					return
				}
			}
			t.Fatalf("violations %v lack %q", got, tc.want)
		})
	}
}

// The allowlist excuses what it names and nothing beside it.
func TestAllowancesAreNarrow(t *testing.T) {
	s := mustLoad(t)
	for _, a := range allowances {
		if len(a.why) < 40 {
			t.Errorf("allowance for %s %s %v needs a reason", a.method, a.template, a.pointers)
		}
	}
	check := func(method, path string, body string) []Violation {
		return s.CheckResponse(method, path, 200, []byte(body))
	}
	if v := check("GET", "/_matrix/client/v3/devices", `{"devices":[{"device_id":"D","display_name":null,"last_seen_ip":null,"last_seen_ts":null}]}`); len(v) > 0 {
		t.Errorf("Synapse's device nulls were not excused: %v", v)
	}
	if v := check("GET", "/_matrix/client/v3/devices", `{"devices":[{"device_id":null}]}`); len(v) == 0 {
		t.Error("a null device_id was excused")
	}
	if v := check("GET", "/_matrix/client/v3/devices", `{"devices":[{"device_id":"D","last_seen_ts":"x"}]}`); len(v) == 0 {
		t.Error("a string last_seen_ts was excused")
	}
	edu := `{"start":"s1","end":"s2","chunk":[{"type":"m.typing","room_id":"!r:x","content":{"user_ids":[]}}]}`
	if v := check("GET", "/_matrix/client/v3/events", edu); len(v) > 0 {
		t.Errorf("a typing EDU in /events was not excused: %v", v)
	}
	roomEvent := `{"start":"s1","end":"s2","chunk":[{"type":"m.room.message","event_id":"$e","room_id":"!r:x","content":{"msgtype":"m.text","body":"x"}}]}`
	if v := check("GET", "/_matrix/client/v3/events", roomEvent); len(v) == 0 {
		t.Error("a room event without sender in /events was excused")
	}
	badPresence := `{"start":"s1","end":"s2","chunk":[{"type":"m.presence","sender":"@a:x","content":{"presence":"online","status_msg":null}}]}`
	if v := check("GET", "/_matrix/client/v3/events", badPresence); len(v) == 0 {
		t.Error("a null status_msg in /events was excused")
	}
}

func TestAppServiceTransactionSchema(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	good := `{"events":[{"type":"m.room.message","content":{"body":"x","msgtype":"m.text"},"event_id":"$a","room_id":"!r:x","sender":"@a:x","origin_server_ts":1}],
		"ephemeral":[{"type":"m.typing","room_id":"!r:x","content":{"user_ids":[]}}]}`
	if v := s.CheckAppServiceTransaction([]byte(good)); len(v) != 0 {
		t.Errorf("a good transaction: %v", v)
	}
	for _, bad := range []string{`{}`, `{"events":[{"type":"m.room.message"}]}`, `not json`} {
		if v := s.CheckAppServiceTransaction([]byte(bad)); len(v) == 0 {
			t.Errorf("%s passed", bad)
		}
	}
}
