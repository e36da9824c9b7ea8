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
	h.seq.acquire(nil)
	defer h.seq.release(nil)
	// Local batches reserved but not yet published are theirs to publish: stop below them.
	if first := h.seq.firstReserved(); first > 0 {
		pos = min(pos, first-1)
	}
	return h.catchUpTurn(ctx, pos)
}

// CatchUpAll catches up to the highest committed position in storage.
func (h *Hub) CatchUpAll(ctx context.Context) error {
	top, err := h.store.MaxPos(ctx)
	if err != nil {
		return err
	}
	return h.CatchUp(ctx, top)
}

// catchUpTurn is CatchUp for callers holding the publishing turn.
func (h *Hub) catchUpTurn(ctx context.Context, pos stream.Pos) error {
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

// stateAt lists the state changes of a batch at one position.
func stateAt(b storage.StreamBatch, pos stream.Pos) []*storage.Event {
	evs := b.State[pos]
	out := make([]*storage.Event, len(evs))
	for i := range evs {
		out[i] = &evs[i]
	}
	return out
}

// eventPublished is a stored event as its writer published it: a redaction brings the new
// stored forms of what it changed.
func (h *Hub) eventPublished(ctx context.Context, e *storage.Event) Published {
	p := Published{RoomID: e.RoomID, Item: EventItem(e), Event: e}
	if e.Type != "m.room.redaction" {
		return p
	}
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
	return p
}

// pushByPos indexes a batch's push outcomes by their events' positions.
func pushByPos(b storage.StreamBatch) map[stream.Pos]*storage.PushOutcome {
	push := make(map[stream.Pos]*storage.PushOutcome, len(b.Push))
	for i := range b.Push {
		push[b.Push[i].Pos] = &b.Push[i]
	}
	return push
}

// published turns a batch read from storage into the items to publish, in position order.
func (h *Hub) published(ctx context.Context, b storage.StreamBatch) ([]Published, error) {
	var pubs []Published
	push := pushByPos(b)
	for i := range b.Events {
		p := h.eventPublished(ctx, &b.Events[i])
		p.Push = push[b.Events[i].Pos]
		p.State = stateAt(b, b.Events[i].Pos)
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
		pubs = append(pubs, Published{Item: Item{Pos: a.Pos}, Users: []string{a.UserID}, AccountDataOf: a.UserID, AccountDataType: a.Type})
	}
	e2ee, err := h.e2eePublished(ctx, b)
	if err != nil {
		return nil, err
	}
	pubs = append(pubs, e2ee...)
	slices.SortStableFunc(pubs, func(a, b Published) int { return int(a.Item.Pos - b.Item.Pos) })
	return pubs, nil
}

// replay applies to a room being loaded the items of batch that belong to it, in position
// order: its events, receipts and typing, and the presence of users joined to it at the
// time.
func (h *Hub) replay(ctx context.Context, r *Room, b storage.StreamBatch) {
	var pubs []Published
	push := pushByPos(b)
	for i := range b.Events {
		if b.Events[i].RoomID == r.ID {
			p := h.eventPublished(ctx, &b.Events[i])
			// Its push outcome too: the room's counts were read before this event.
			p.Push = push[b.Events[i].Pos]
			p.State = stateAt(b, b.Events[i].Pos)
			pubs = append(pubs, p)
		}
	}
	for _, rc := range b.Receipts {
		if rc.RoomID == r.ID {
			pubs = append(pubs, Published{RoomID: rc.RoomID, Item: ReceiptItem(rc)})
		}
	}
	for _, t := range b.Typing {
		if t.RoomID == r.ID {
			pubs = append(pubs, Published{RoomID: t.RoomID, Item: TypingItem(t)})
		}
	}
	for _, p := range b.Presence {
		pubs = append(pubs, Published{RoomID: r.ID, Item: PresenceItem(p)})
	}
	slices.SortStableFunc(pubs, func(a, b Published) int { return int(a.Item.Pos - b.Item.Pos) })
	for i := range pubs {
		if p := &pubs[i]; p.Item.Kind != KindPresence || r.Membership(p.Item.UserID) == visibility.Join {
			r.apply(p)
		}
	}
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
