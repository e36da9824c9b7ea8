// Package filter parses, validates and applies Matrix event filters (sync filters and the
// RoomEventFilter of /messages and /context).
package filter

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Error is a filter that cannot be used; Code is the Matrix errcode to answer with.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badJSON(msg string) error { return &Error{Code: "M_BAD_JSON", Message: msg} }

// MaxLimit caps the limit of any filter.
const MaxLimit = 1000

// Filter is a whole sync filter.
type Filter struct {
	EventFields []string    `json:"event_fields,omitempty"`
	EventFormat string      `json:"event_format,omitempty"`
	Presence    EventFilter `json:"presence,omitzero"`
	AccountData EventFilter `json:"account_data,omitzero"`
	Room        RoomFilter  `json:"room,omitzero"`
}

// EventFilter selects events by type and sender. A nil list is unset (matches all); an
// empty list matches nothing.
type EventFilter struct {
	Limit      int      `json:"limit,omitzero"`
	Types      []string `json:"types,omitempty"`
	NotTypes   []string `json:"not_types,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	NotSenders []string `json:"not_senders,omitempty"`
	// typesSet / sendersSet distinguish an empty list from an absent one; limitSet a limit
	// of 0 from none.
	typesSet, sendersSet, limitSet bool
}

// RoomEventFilter adds room and content conditions.
type RoomEventFilter struct {
	EventFilter
	Rooms                     []string `json:"rooms,omitempty"`
	NotRooms                  []string `json:"not_rooms,omitempty"`
	ContainsURL               *bool    `json:"contains_url,omitempty"`
	LazyLoadMembers           bool     `json:"lazy_load_members,omitzero"`
	IncludeRedundantMembers   bool     `json:"include_redundant_members,omitzero"`
	UnreadThreadNotifications bool     `json:"unread_thread_notifications,omitzero"`
	roomsSet                  bool
}

// RoomFilter is the "room" part of a sync filter.
type RoomFilter struct {
	Rooms        []string        `json:"rooms,omitempty"`
	NotRooms     []string        `json:"not_rooms,omitempty"`
	IncludeLeave bool            `json:"include_leave,omitzero"`
	Timeline     RoomEventFilter `json:"timeline,omitzero"`
	State        RoomEventFilter `json:"state,omitzero"`
	Ephemeral    RoomEventFilter `json:"ephemeral,omitzero"`
	AccountData  RoomEventFilter `json:"account_data,omitzero"`
	roomsSet     bool
}

// Parse reads a sync filter.
func Parse(data []byte) (*Filter, error) {
	obj, err := object(data, "filter")
	if err != nil {
		return nil, err
	}
	f := &Filter{}
	if f.EventFields, err = stringList(obj, "event_fields"); err != nil {
		return nil, err
	}
	for _, p := range f.EventFields {
		if p == "" {
			return nil, badJSON("event_fields entries must not be empty")
		}
	}
	if len(f.EventFields) == 0 {
		f.EventFields = nil // an empty list restricts nothing, like an absent one
	}
	if f.EventFormat, err = str(obj, "event_format"); err != nil {
		return nil, err
	}
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return nil, badJSON("event_format must be client or federation")
	}
	if raw, ok := present(obj, "presence"); ok {
		if f.Presence, err = parseEventFilter(raw, "presence"); err != nil {
			return nil, err
		}
	}
	if raw, ok := present(obj, "account_data"); ok {
		if f.AccountData, err = parseEventFilter(raw, "account_data"); err != nil {
			return nil, err
		}
	}
	if raw, ok := present(obj, "room"); ok {
		if f.Room, err = parseRoomFilter(raw); err != nil {
			return nil, err
		}
	}
	if err := f.checkIDs(); err != nil {
		return nil, err
	}
	return f, nil
}

// checkIDs refuses room and sender lists naming things that are not room or user IDs, as
// Synapse's filter schema does for sync filters (not for /messages' RoomEventFilter).
func (f *Filter) checkIDs() error {
	users := [][]string{f.Presence.Senders, f.Presence.NotSenders, f.AccountData.Senders, f.AccountData.NotSenders}
	rooms := [][]string{f.Room.Rooms, f.Room.NotRooms}
	for _, ef := range []*RoomEventFilter{&f.Room.Timeline, &f.Room.State, &f.Room.Ephemeral, &f.Room.AccountData} {
		users = append(users, ef.Senders, ef.NotSenders)
		rooms = append(rooms, ef.Rooms, ef.NotRooms)
	}
	for _, list := range users {
		for _, u := range list {
			if _, _, err := id.UserID(u).ParseAndValidateRelaxed(); err != nil || len(u) > 255 || strings.HasPrefix(u, "@:") {
				return badJSON(strconv.Quote(u) + " is not a user ID")
			}
		}
	}
	for _, list := range rooms {
		for _, r := range list {
			if !validRoomID(r) {
				return badJSON(strconv.Quote(r) + " is not a room ID")
			}
		}
	}
	return nil
}

// validRoomID accepts "!opaque:server" and room version 12's "!hash".
func validRoomID(r string) bool {
	if len(r) < 2 || len(r) > 255 || r[0] != '!' || strings.ContainsAny(r, " \t\n\x00/") {
		return false
	}
	local, server, hasServer := strings.Cut(r[1:], ":")
	return local != "" && (!hasServer || server != "")
}

// ParseRoomEventFilter reads the filter parameter of /messages and /context.
func ParseRoomEventFilter(data []byte) (*RoomEventFilter, error) {
	f, err := parseRoomEventFilter(data, "filter")
	if err != nil {
		return nil, err
	}
	return &f, nil
}

// JSON re-encodes the filter (for storage); Parse(f.JSON()) equals f.
func (f *Filter) JSON() []byte {
	b, err := json.Marshal(f, json.Deterministic(true))
	if err != nil {
		return []byte("{}")
	}
	return b
}

func (f EventFilter) MarshalJSONTo(enc *jsontext.Encoder) error {
	m := map[string]any{}
	if f.Limit > 0 || f.limitSet {
		m["limit"] = f.Limit
	}
	if f.typesSet || f.Types != nil {
		m["types"] = nonNil(f.Types)
	}
	if f.NotTypes != nil {
		m["not_types"] = f.NotTypes
	}
	if f.sendersSet || f.Senders != nil {
		m["senders"] = nonNil(f.Senders)
	}
	if f.NotSenders != nil {
		m["not_senders"] = f.NotSenders
	}
	return json.MarshalEncode(enc, m, json.Deterministic(true))
}

func (f RoomEventFilter) MarshalJSONTo(enc *jsontext.Encoder) error {
	raw, err := json.Marshal(f.EventFilter)
	if err != nil {
		return err
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	if f.roomsSet || f.Rooms != nil {
		m["rooms"] = nonNil(f.Rooms)
	}
	if f.NotRooms != nil {
		m["not_rooms"] = f.NotRooms
	}
	if f.ContainsURL != nil {
		m["contains_url"] = *f.ContainsURL
	}
	if f.LazyLoadMembers {
		m["lazy_load_members"] = true
	}
	if f.IncludeRedundantMembers {
		m["include_redundant_members"] = true
	}
	if f.UnreadThreadNotifications {
		m["unread_thread_notifications"] = true
	}
	return json.MarshalEncode(enc, m, json.Deterministic(true))
}

func (f RoomFilter) MarshalJSONTo(enc *jsontext.Encoder) error {
	m := map[string]any{
		"timeline": f.Timeline, "state": f.State, "ephemeral": f.Ephemeral, "account_data": f.AccountData,
	}
	if f.roomsSet || f.Rooms != nil {
		m["rooms"] = nonNil(f.Rooms)
	}
	if f.NotRooms != nil {
		m["not_rooms"] = f.NotRooms
	}
	if f.IncludeLeave {
		m["include_leave"] = true
	}
	return json.MarshalEncode(enc, m, json.Deterministic(true))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// --- parsing helpers: strict about types, tolerant of unknown keys ---

func object(data []byte, what string) (map[string]jsontext.Value, error) {
	v := jsontext.Value(data)
	if !v.IsValid() {
		return nil, &Error{Code: "M_NOT_JSON", Message: what + " is not valid JSON"}
	}
	if v.Kind() != '{' {
		return nil, badJSON(what + " must be a JSON object")
	}
	var obj map[string]jsontext.Value
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, badJSON(what + " is not a valid object")
	}
	return obj, nil
}

// present returns a key's raw value unless it is absent or null.
func present(obj map[string]jsontext.Value, key string) (jsontext.Value, bool) {
	raw, ok := obj[key]
	if !ok || raw.Kind() == 'n' {
		return nil, false
	}
	return raw, true
}

func str(obj map[string]jsontext.Value, key string) (string, error) {
	raw, ok := present(obj, key)
	if !ok {
		return "", nil
	}
	var s string
	if raw.Kind() != '"' || json.Unmarshal(raw, &s) != nil {
		return "", badJSON(key + " must be a string")
	}
	return s, nil
}

func boolean(obj map[string]jsontext.Value, key string) (*bool, error) {
	raw, ok := present(obj, key)
	if !ok {
		return nil, nil
	}
	var b bool
	if (raw.Kind() != 't' && raw.Kind() != 'f') || json.Unmarshal(raw, &b) != nil {
		return nil, badJSON(key + " must be a boolean")
	}
	return &b, nil
}

// stringList returns nil when absent, and a non-nil (maybe empty) slice when present.
func stringList(obj map[string]jsontext.Value, key string) ([]string, error) {
	raw, ok := present(obj, key)
	if !ok {
		return nil, nil
	}
	if raw.Kind() != '[' {
		return nil, badJSON(key + " must be a list of strings")
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badJSON(key + " must be a list of strings")
	}
	if list == nil {
		list = []string{}
	}
	if len(list) > 10000 {
		return nil, &Error{Code: "M_INVALID_PARAM", Message: key + " has too many entries"}
	}
	return list, nil
}

func parseEventFilter(data []byte, what string) (EventFilter, error) {
	var f EventFilter
	obj, err := object(data, what)
	if err != nil {
		return f, err
	}
	if raw, ok := present(obj, "limit"); ok {
		var n int64
		if raw.Kind() != '0' || strings.ContainsAny(string(raw), ".eE") || json.Unmarshal(raw, &n) != nil {
			return f, badJSON("limit must be an integer")
		}
		if n < 0 {
			return f, &Error{Code: "M_INVALID_PARAM", Message: "limit must not be negative"}
		}
		f.Limit, f.limitSet = int(min(n, MaxLimit)), true
	}
	if f.Types, err = stringList(obj, "types"); err != nil {
		return f, err
	}
	f.typesSet = f.Types != nil
	if f.NotTypes, err = stringList(obj, "not_types"); err != nil {
		return f, err
	}
	if f.Senders, err = stringList(obj, "senders"); err != nil {
		return f, err
	}
	f.sendersSet = f.Senders != nil
	if f.NotSenders, err = stringList(obj, "not_senders"); err != nil {
		return f, err
	}
	return f, nil
}

func parseRoomEventFilter(data []byte, what string) (RoomEventFilter, error) {
	var f RoomEventFilter
	ef, err := parseEventFilter(data, what)
	if err != nil {
		return f, err
	}
	f.EventFilter = ef
	obj, _ := object(data, what)
	if f.Rooms, err = stringList(obj, "rooms"); err != nil {
		return f, err
	}
	f.roomsSet = f.Rooms != nil
	if f.NotRooms, err = stringList(obj, "not_rooms"); err != nil {
		return f, err
	}
	if f.ContainsURL, err = boolean(obj, "contains_url"); err != nil {
		return f, err
	}
	for key, dst := range map[string]*bool{
		"lazy_load_members": &f.LazyLoadMembers, "include_redundant_members": &f.IncludeRedundantMembers,
		"unread_thread_notifications": &f.UnreadThreadNotifications,
	} {
		b, err := boolean(obj, key)
		if err != nil {
			return f, err
		}
		if b != nil {
			*dst = *b
		}
	}
	return f, nil
}

func parseRoomFilter(data []byte) (RoomFilter, error) {
	var f RoomFilter
	obj, err := object(data, "room")
	if err != nil {
		return f, err
	}
	if f.Rooms, err = stringList(obj, "rooms"); err != nil {
		return f, err
	}
	f.roomsSet = f.Rooms != nil
	if f.NotRooms, err = stringList(obj, "not_rooms"); err != nil {
		return f, err
	}
	if b, err := boolean(obj, "include_leave"); err != nil {
		return f, err
	} else if b != nil {
		f.IncludeLeave = *b
	}
	for key, dst := range map[string]*RoomEventFilter{"timeline": &f.Timeline, "state": &f.State, "ephemeral": &f.Ephemeral, "account_data": &f.AccountData} {
		if raw, ok := present(obj, key); ok {
			if *dst, err = parseRoomEventFilter(raw, key); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// --- matching ---

// LimitSet reports whether the filter gave a limit (which may be 0).
func (f *EventFilter) LimitSet() bool { return f != nil && (f.limitSet || f.Limit > 0) }

// Allows reports whether an event of this type from this sender passes.
func (f *EventFilter) Allows(eventType, sender string) bool {
	if f == nil {
		return true
	}
	if matchAny(f.NotTypes, eventType) || contains(f.NotSenders, sender) {
		return false
	}
	if (f.typesSet || f.Types != nil) && !matchAny(f.Types, eventType) {
		return false
	}
	if (f.sendersSet || f.Senders != nil) && !contains(f.Senders, sender) {
		return false
	}
	return true
}

// Allows reports whether an event in roomID passes.
func (f *RoomEventFilter) Allows(roomID, eventType, sender string, hasURL bool) bool {
	if f == nil {
		return true
	}
	if contains(f.NotRooms, roomID) || ((f.roomsSet || f.Rooms != nil) && !contains(f.Rooms, roomID)) {
		return false
	}
	if f.ContainsURL != nil && *f.ContainsURL != hasURL {
		return false
	}
	return f.EventFilter.Allows(eventType, sender)
}

// AllowsRoom reports whether a room is included at all.
func (f *RoomFilter) AllowsRoom(roomID string) bool {
	if f == nil {
		return true
	}
	if contains(f.NotRooms, roomID) {
		return false
	}
	return !(f.roomsSet || f.Rooms != nil) || contains(f.Rooms, roomID)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}

// Match matches s against a pattern in which * stands for any sequence of characters.
func Match(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}

// ApplyEventFields keeps only the filter's event_fields of a client event (dot-separated
// paths, with "\." for a literal dot). Without event_fields the event is returned as is.
func (f *Filter) ApplyEventFields(event []byte) []byte {
	if f == nil || len(f.EventFields) == 0 {
		return event
	}
	var obj map[string]any
	if json.Unmarshal(event, &obj) != nil {
		return event
	}
	out := map[string]any{}
	for _, field := range f.EventFields {
		path := splitPath(field)
		copyPath(obj, out, path)
	}
	b, err := json.Marshal(out, json.Deterministic(true))
	if err != nil {
		return event
	}
	return b
}

func splitPath(field string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(field); i++ {
		switch {
		case field[i] == '\\' && i+1 < len(field) && (field[i+1] == '.' || field[i+1] == '\\'):
			cur.WriteByte(field[i+1])
			i++
		case field[i] == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(field[i])
		}
	}
	return append(parts, cur.String())
}

func copyPath(src, dst map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return
	}
	next, ok := dst[path[0]].(map[string]any)
	if !ok {
		next = map[string]any{}
		dst[path[0]] = next
	}
	copyPath(sub, next, path[1:])
}
