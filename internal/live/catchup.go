package live

import (
	"context"
	"slices"
	"strconv"

	"github.com/tidwall/gjson"

	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// StreamChannel is the notification channel that announces committed stream positions to
// the other processes sharing a PostgreSQL database.
const StreamChannel = "porthole_stream"

// CatchUp publishes everything committed up to pos that this process has not published
// yet: the items other nodes wrote, read back from storage in position order. Each node
// fetches each new item once and then serves its own long-polls from memory.
func (h *Hub) CatchUp(ctx context.Context, pos stream.Pos) error {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	return h.catchUpLocked(ctx, pos)
}

// CatchUpAll catches up to the highest committed position in storage.
func (h *Hub) CatchUpAll(ctx context.Context) error {
	top, err := h.store.MaxPos(ctx)
	if err != nil {
		return err
	}
	return h.CatchUp(ctx, top)
}

// catchUpLocked is CatchUp for callers holding writeMu.
func (h *Hub) catchUpLocked(ctx context.Context, pos stream.Pos) error {
	from := h.notifier.Current()
	if pos <= from {
		return nil
	}
	// Never move past what storage has committed, whatever a notification claimed.
	top, err := h.store.MaxPos(ctx)
	if err != nil {
		return err
	}
	if pos = min(pos, top); pos <= from {
		return nil
	}
	batch, err := h.store.StreamRange(ctx, from, pos)
	if err != nil {
		return err
	}
	pubs, err := h.published(ctx, batch)
	if err != nil {
		return err
	}
	h.publish(pubs)
	// Positions with nothing left to show (a typing change since replaced, say) still move
	// the stream on.
	h.notifier.Advance(pos)
	return nil
}

// published turns a batch read from storage into the items to publish, in position order.
func (h *Hub) published(ctx context.Context, b storage.StreamBatch) ([]Published, error) {
	var pubs []Published
	for i := range b.Events {
		e := &b.Events[i]
		p := Published{RoomID: e.RoomID, Item: EventItem(e), Event: e}
		if e.Type == "m.room.redaction" {
			target := gjson.GetBytes(e.PDU, "redacts").Str
			if target == "" {
				target = gjson.GetBytes(e.PDU, "content.redacts").Str
			}
			if t, err := h.store.EventByID(ctx, target); err == nil && t.RoomID == e.RoomID {
				p.Replaced = append(p.Replaced, &t)
				// The state event that copied the redacted content was rewritten too.
				if t.StateKey != nil {
					if next, err := h.store.NextStateEvent(ctx, e.RoomID, storage.StateKeyOf{Type: t.Type, StateKey: *t.StateKey}, t.Pos); err == nil {
						p.Replaced = append(p.Replaced, &next)
					}
				}
			}
		}
		pubs = append(pubs, p)
	}
	for _, r := range b.Receipts {
		pubs = append(pubs, Published{RoomID: r.RoomID, Item: ReceiptItem(r)})
	}
	for _, t := range b.Typing {
		pubs = append(pubs, Published{RoomID: t.RoomID, Item: TypingItem(t)})
	}
	for _, p := range b.Presence {
		pubs = append(pubs, Published{Item: PresenceItem(p), Users: []string{p.UserID}})
		ms, err := h.store.MembershipsOf(ctx, p.UserID)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.Membership == visibility.Join {
				pubs = append(pubs, Published{RoomID: m.RoomID, Item: PresenceItem(p)})
			}
		}
	}
	for _, a := range b.AccountData {
		pubs = append(pubs, Published{Item: Item{Pos: a.Pos}, Users: []string{a.UserID}, AccountDataOf: a.UserID})
	}
	e2ee, err := h.e2eePublished(ctx, b)
	if err != nil {
		return nil, err
	}
	pubs = append(pubs, e2ee...)
	slices.SortStableFunc(pubs, func(a, b Published) int { return int(a.Item.Pos - b.Item.Pos) })
	return pubs, nil
}

// HandleNotification reacts to a StreamChannel notification from another node.
func (h *Hub) HandleNotification(ctx context.Context, payload string) {
	pos, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		h.log.Warn("bad stream notification", "payload", payload)
		return
	}
	if err := h.CatchUp(ctx, stream.Pos(pos)); err != nil {
		h.log.Error("catching up on the stream", "pos", pos, "err", err)
	}
}
