// Package clientevent turns stored events into the client event format, once per event.
//
// An Encoded event holds the client JSON up to the inside of its "unsigned" object; the
// only per-reader parts (unsigned.age, unsigned.membership and, for the sender's own device,
// unsigned.transaction_id) are appended when a response is written. A long-poll serving
// thousands of readers therefore copies bytes instead of encoding JSON per reader.
package clientevent

import (
	"encoding/json/jsontext"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"porthole/internal/relations"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Encoded is one room event in client format, ready to be appended to responses.
type Encoded struct {
	Pos            stream.Pos
	ID             string
	RoomID         string
	Type           string
	StateKey       *string
	Sender         string
	OriginTS       int64
	Visibility     string
	Membership     string // new membership, for m.room.member events
	PrevMembership string
	TxnID          string
	TxnDevice      string
	Redacted       bool
	// HasURL reports a string content.url, for contains_url filters.
	HasURL bool
	// rel is the relation the event declares (nil for none).
	rel *storage.Relation

	// prefix is `{...,"unsigned":{` followed by the stored unsigned members, if any.
	prefix   []byte
	hasInner bool
}

// Encode builds the client form of a stored event.
func Encode(e *storage.Event) *Encoded {
	enc := &Encoded{
		Pos: e.Pos, ID: e.ID, RoomID: e.RoomID, Type: e.Type, StateKey: e.StateKey, Sender: e.Sender,
		OriginTS: e.OriginTS, Visibility: e.Visibility, Membership: e.Membership, PrevMembership: e.PrevMembership,
		TxnID: e.TxnID, TxnDevice: e.TxnDevice, Redacted: e.RedactedBecause != nil,
	}
	fields := gjson.GetManyBytes(e.PDU, "content", "redacts", "content.url")
	content := fields[0].Raw
	enc.HasURL = fields[2].Type == gjson.String
	if content == "" || content[0] != '{' {
		content = "{}"
	}
	if strings.Contains(content, "m.relates_to") {
		if r, ok := relations.OfContent(e, []byte(content)); ok {
			enc.rel = &r
		}
	}
	// Clients read redacts at the top level (room v1-v10) or in content (v11+): give both,
	// whatever the room version (MSC2174).
	redacts := fields[1].Str
	if e.Type == "m.room.redaction" {
		if inContent := gjson.Get(content, "redacts"); inContent.Exists() {
			redacts = inContent.Str
		} else if redacts != "" {
			content = withRedacts(content, redacts)
		}
	}
	b := make([]byte, 0, len(content)+len(e.Unsigned)+len(e.RedactedBecause)+256)
	b = append(b, `{"content":`...)
	b = append(b, content...)
	b = appendStringField(b, "event_id", e.ID)
	b = append(b, `,"origin_server_ts":`...)
	b = strconv.AppendInt(b, e.OriginTS, 10)
	if redacts != "" {
		b = appendStringField(b, "redacts", redacts)
	}
	b = appendStringField(b, "room_id", e.RoomID)
	b = appendStringField(b, "sender", e.Sender)
	if e.StateKey != nil {
		b = appendStringField(b, "state_key", *e.StateKey)
	}
	b = appendStringField(b, "type", e.Type)
	// user_id: the legacy v1 format's copy of sender, which /events clients and sytest read.
	b = appendStringField(b, "user_id", e.Sender)
	b = append(b, `,"unsigned":{`...)
	if len(e.Unsigned) > 2 {
		b = append(b, e.Unsigned[1:len(e.Unsigned)-1]...)
		enc.hasInner = true
	}
	if e.RedactedBecause != nil {
		if enc.hasInner {
			b = append(b, ',')
		}
		b = append(b, `"redacted_because":`...)
		b = append(b, e.RedactedBecause...)
		enc.hasInner = true
	}
	enc.prefix = b
	return enc
}

// withRedacts adds a redacts key to a content object that lacks one.
func withRedacts(content, redacts string) string {
	b := []byte(`{"redacts":`)
	b, _ = jsontext.AppendQuote(b, redacts)
	if content != "{}" {
		b = append(b, ',')
	}
	return string(append(b, content[1:]...))
}

func appendStringField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	b, _ = jsontext.AppendQuote(b, value)
	return b
}

// Relation is the relation the event declares, nil when none (it is a relations.Child).
func (e *Encoded) Relation() *storage.Relation { return e.rel }

// RelType is the type of the event's own relation, "" when it has none.
func (e *Encoded) RelType() string {
	if e.rel == nil {
		return ""
	}
	return e.rel.RelType
}

// Reader identifies who an event is written for.
type Reader struct {
	UserID   string
	DeviceID string
}

// Append writes the event for a reader: age is now minus the event's timestamp, membership
// the reader's membership at the event (MSC4115), and the transaction ID only for the
// device that sent it.
func (e *Encoded) Append(b []byte, nowMS int64, membership string, r Reader) []byte {
	return e.AppendWith(b, nowMS, membership, r, nil)
}

// AppendWith is Append with more members of unsigned (such as the bundled "m.relations"):
// extra appends them (`"key":value`, comma separated) when it is not nil.
func (e *Encoded) AppendWith(b []byte, nowMS int64, membership string, r Reader, extra func([]byte) []byte) []byte {
	b = append(b, e.prefix...)
	if e.hasInner {
		b = append(b, ',')
	}
	b = append(b, `"age":`...)
	b = strconv.AppendInt(b, max(nowMS-e.OriginTS, 0), 10)
	if membership != "" {
		b = append(b, `,"membership":`...)
		b, _ = jsontext.AppendQuote(b, membership)
	}
	if e.TxnID != "" && r.UserID == e.Sender && r.DeviceID == e.TxnDevice {
		b = append(b, `,"transaction_id":`...)
		b, _ = jsontext.AppendQuote(b, e.TxnID)
	}
	if extra != nil {
		b = extra(append(b, ','))
	}
	return append(b, '}', '}')
}

// JSON is the event alone for a reader, as a complete JSON object.
func (e *Encoded) JSON(nowMS int64, membership string, r Reader) jsontext.Value {
	return e.Append(make([]byte, 0, len(e.prefix)+64), nowMS, membership, r)
}

// Stripped is the stripped-state form used in invites: type, state_key, content, sender.
func Stripped(e *storage.Event) jsontext.Value {
	content := gjson.GetBytes(e.PDU, "content").Raw
	if content == "" {
		content = "{}"
	}
	b := make([]byte, 0, len(content)+128)
	b = append(b, `{"content":`...)
	b = append(b, content...)
	b = appendStringField(b, "sender", e.Sender)
	sk := ""
	if e.StateKey != nil {
		sk = *e.StateKey
	}
	b = appendStringField(b, "state_key", sk)
	b = appendStringField(b, "type", e.Type)
	return append(b, '}')
}

// Content returns the raw content object of a stored event.
func Content(e *storage.Event) []byte {
	c := gjson.GetBytes(e.PDU, "content")
	if c.Type != gjson.JSON {
		return []byte("{}")
	}
	return []byte(c.Raw)
}
