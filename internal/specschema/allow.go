package specschema

import (
	"path"
	"slices"
	"strings"
)

// allowance excuses one known difference from the spec's schemas: where Synapse answers
// differently on purpose and clients depend on it, or where the spec's schema itself is
// wrong. Keep this list short, and say why for each entry.
type allowance struct {
	method, template string   // "*" matches any
	pointers         []string // path.Match patterns over the JSON pointer
	notRoomEvents    bool     // if set, only inside events without an event ID
	problem          string   // if set, a substring of the schema's complaint
	why              string
}

var allowances = []allowance{
	{
		method: "GET", template: "/_matrix/client/v3/devices", pointers: []string{"/devices/*/display_name", "/devices/*/last_seen_ip", "/devices/*/last_seen_ts"}, problem: "got null",
		why: "Synapse answers an unset display_name, last_seen_ip or last_seen_ts with null, and " +
			"matrix-nio 0.20 requires the three keys (string or null): without them its devices() fails.",
	},
	{
		method: "GET", template: "/_matrix/client/v3/devices/{deviceId}", pointers: []string{"/display_name", "/last_seen_ip", "/last_seen_ts"}, problem: "got null",
		why: "the same device object as in GET /devices (Synapse's nulls, which matrix-nio relies on).",
	},
	{
		method: "GET", template: "/_matrix/client/v3/rooms/{roomId}/joined_members", pointers: []string{"/joined/*/display_name", "/joined/*/avatar_url"}, problem: "got null",
		why: "Synapse answers an unset display_name or avatar_url with null, and matrix-nio 0.20 " +
			"requires display_name (string or null): without it its joined_members() fails.",
	},
	{
		method: "GET", template: "/_matrix/client/v3/events", pointers: []string{"/chunk/*"},
		notRoomEvents: true, problem: "missing propert",
		why: "Synapse's deprecated global /events stream carries presence, typing, receipts and " +
			"account data beside room events, without event IDs; sytest and old clients read " +
			"them there. The spec's schema lists room events only.",
	},
	{
		method: "POST", template: "/_matrix/client/v3/keys/device_signing/upload", pointers: []string{""},
		problem: "missing property 'errcode'",
		why: "a spec gap: the endpoint uses user-interactive auth (its description says so), but " +
			"its OpenAPI lists no 401 answer, so the UIA challenge (flows, session) is checked " +
			"against the plain error body.",
	},
	{
		method: "GET", template: "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", pointers: []string{""},
		problem: "'oneOf' failed, subschemas 0, 1 matched",
		why: "a schema bug: with ?format=event the answer is a state event, which matches both " +
			"branches of the spec's oneOf (any object, and a state event), so oneOf can never pass.",
	},
	{
		method: "GET", template: "/_matrix/client/v3/voip/turnServer", pointers: []string{""},
		problem: "missing properties 'username', 'password', 'uris', 'ttl'",
		why: "with no TURN server configured Synapse answers {}, which clients (matrix-js-sdk's " +
			"checkTurnServers) read as none; the spec's schema has no empty answer.",
	},
}

func allowed(v Violation) bool {
	for _, a := range allowances {
		if a.method != "*" && a.method != v.Method {
			continue
		}
		if a.template != "*" && a.template != v.Template {
			continue
		}
		if !slices.ContainsFunc(a.pointers, func(p string) bool { ok, _ := path.Match(p, v.Pointer); return ok }) {
			continue
		}
		if a.notRoomEvents && v.RoomEvent {
			continue
		}
		if a.problem != "" && !strings.Contains(v.Problem, a.problem) {
			continue
		}
		return true
	}
	return false
}
