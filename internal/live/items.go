package live

import (
	"encoding/json/jsontext"
	"strconv"

	"porthole/internal/clientevent"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Kind is the kind of a stream item.
type Kind uint8

const (
	KindEvent Kind = iota
	KindReceipt
	KindTyping
	KindPresence
	// KindAccountData is a user's account data change (only the deprecated global /events
	// stream serves it; it is not kept in room windows).
	KindAccountData
)

// Item is one entry of the stream as a room sees it, kept encoded: room events in client
// format, typing and receipts as finished m.typing / m.receipt objects. Presence is encoded
// when written because last_active_ago depends on the time of the response.
type Item struct {
	Pos   stream.Pos
	Kind  Kind
	Event *clientevent.Encoded
	// EDU is the m.typing / m.receipt object with its room_id, as /events serves it;
	// SyncEDU is the same without room_id, as /sync's ephemeral section wants it.
	EDU, SyncEDU []byte
	Presence     *storage.Presence
	// UserID is whose presence, or whose receipt.
	UserID  string
	Private bool
	// ReadUpTo is, for an m.read or m.read.private receipt, the position of its event,
	// and Thread its thread_id ("" unthreaded, "main" the main timeline).
	ReadUpTo stream.Pos
	Thread   string
}

// EventItem wraps a stored event.
func EventItem(e *storage.Event) Item {
	return Item{Pos: e.Pos, Kind: KindEvent, Event: clientevent.Encode(e)}
}

// TypingItem encodes the typing set of a room.
func TypingItem(t storage.Typing) Item {
	b := []byte(`{"content":{"user_ids":[`)
	for i, u := range t.UserIDs {
		if i > 0 {
			b = append(b, ',')
		}
		b, _ = jsontext.AppendQuote(b, u)
	}
	b = append(b, `]}`...)
	edu, sync := withRoom(b, t.RoomID, "m.typing")
	return Item{Pos: t.Pos, Kind: KindTyping, EDU: edu, SyncEDU: sync}
}

// ReceiptItem encodes one receipt as an m.receipt event.
func ReceiptItem(r storage.Receipt) Item {
	b := []byte(`{"content":{`)
	b, _ = jsontext.AppendQuote(b, r.EventID)
	b = append(b, ":{"...)
	b, _ = jsontext.AppendQuote(b, r.Type)
	b = append(b, ":{"...)
	b, _ = jsontext.AppendQuote(b, r.UserID)
	b = append(b, `:{"ts":`...)
	b = strconv.AppendInt(b, r.TS, 10)
	if r.ThreadID != "" {
		b = append(b, `,"thread_id":`...)
		b, _ = jsontext.AppendQuote(b, r.ThreadID)
	}
	b = append(b, `}}}}`...)
	edu, sync := withRoom(b, r.RoomID, "m.receipt")
	return Item{Pos: r.Pos, Kind: KindReceipt, EDU: edu, SyncEDU: sync, UserID: r.UserID, Private: r.Type == "m.read.private", ReadUpTo: r.EventPos, Thread: r.ThreadID}
}

// withRoom finishes an ephemeral event whose content is in head, once with room_id and
// once without.
func withRoom(head []byte, roomID, evType string) (edu, sync []byte) {
	edu = append(make([]byte, 0, len(head)+len(roomID)+40), head...)
	edu = append(edu, `,"room_id":`...)
	edu, _ = jsontext.AppendQuote(edu, roomID)
	edu = append(edu, `,"type":"`...)
	edu = append(append(edu, evType...), `"}`...)
	sync = append(make([]byte, 0, len(head)+30), head...)
	sync = append(sync, `,"type":"`...)
	sync = append(append(sync, evType...), `"}`...)
	return edu, sync
}

// PresenceItem wraps a presence change.
func PresenceItem(p storage.Presence) Item {
	cp := p
	return Item{Pos: p.Pos, Kind: KindPresence, Presence: &cp, UserID: p.UserID}
}

// AppendPresence writes an m.presence event as of nowMS.
func AppendPresence(b []byte, p *storage.Presence, nowMS int64) []byte {
	b = append(b, `{"content":{`...)
	if p.State == "online" {
		b = append(b, `"currently_active":`...)
		b = strconv.AppendBool(b, p.CurrentlyActive)
		b = append(b, ',')
	}
	if p.LastActiveTS > 0 {
		b = append(b, `"last_active_ago":`...)
		b = strconv.AppendInt(b, max(nowMS-p.LastActiveTS, 0), 10)
		b = append(b, ',')
	}
	b = append(b, `"presence":`...)
	b, _ = jsontext.AppendQuote(b, p.State)
	// Without a message the key is left out: the event schema says string, and clients
	// (matrix-nio) drop the whole event for a null.
	if p.StatusMsg != nil {
		b = append(b, `,"status_msg":`...)
		b, _ = jsontext.AppendQuote(b, *p.StatusMsg)
	}
	b = append(b, `,"user_id":`...)
	b, _ = jsontext.AppendQuote(b, p.UserID)
	b = append(b, `},"sender":`...)
	b, _ = jsontext.AppendQuote(b, p.UserID)
	return append(b, `,"type":"m.presence"}`...)
}
