package syncer

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"slices"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// RoomInitialSync is GET /rooms/{roomId}/initialSync: the snapshot a peeking client (or a
// member) starts from. Members get the current room; users who left get the room as it was
// at their leave; anyone else may peek while the room is world-readable. messages.end feeds
// /events; messages.start feeds /messages?dir=b.
func (sy *Syncer) RoomInitialSync(ctx context.Context, sess *auth.Session, roomID string, limit int) ([]byte, error) {
	a, err := sy.access(ctx, sess, roomID)
	if err != nil {
		return nil, err
	}
	v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	b := []byte(`{"room_id":`)
	b, _ = jsontext.AppendQuote(b, roomID)
	b = append(b, `,"messages":`...)
	b, err = sy.appendMessages(ctx, b, v, a.room, a.upTo, limit)
	if err != nil {
		return nil, err
	}
	state, err := sy.stateFor(ctx, a)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	b = append(b, `,"state":`...)
	b = sy.appendEvents(b, v, state)
	b = append(b, `,"presence":`...)
	if a.departed {
		b = append(b, "[]"...)
	} else if b, err = sy.appendMemberPresence(ctx, b, a.room.Joined(), v.nowMS); err != nil {
		return nil, err
	}
	b = append(b, `,"receipts":`...)
	if a.departed {
		b = append(b, "[]"...)
	} else if b, err = sy.appendReceipts(ctx, b, v, roomID, 0, a.upTo); err != nil {
		return nil, err
	}
	b = append(b, `,"account_data":`...)
	if b, err = sy.appendRoomAccountData(ctx, b, sess.UserID, roomID); err != nil {
		return nil, err
	}
	if !a.peeking {
		b = append(b, `,"membership":`...)
		b, _ = jsontext.AppendQuote(b, a.membership)
		if info, err := sy.store.Room(ctx, roomID); err == nil {
			b = append(b, `,"visibility":`...)
			b, _ = jsontext.AppendQuote(b, directoryVisibility(info.Published))
		}
	}
	return append(b, '}'), nil
}

func directoryVisibility(published bool) string {
	if published {
		return "public"
	}
	return "private"
}

// appendMessages writes {chunk, start, end} with the latest limit events up to upTo, in
// order, filtered for v after the limit is applied (as Synapse does).
func (sy *Syncer) appendMessages(ctx context.Context, b []byte, v *viewer, room *live.Room, upTo stream.Pos, limit int) ([]byte, error) {
	roomID := room.ID
	var evs []storage.Event
	if limit > 0 {
		var err error
		evs, err = sy.store.RoomEvents(ctx, roomID, upTo, 0, false, limit)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
	}
	start := upTo
	if len(evs) > 0 {
		start = evs[len(evs)-1].Pos - 1
	}
	var shown shownEvents
	for i := len(evs) - 1; i >= 0; i-- {
		enc := clientevent.Encode(&evs[i])
		if ok, m := v.sees(enc); ok {
			shown = append(shown, shownEvent{enc, m})
		}
	}
	ag, err := sy.aggregate(ctx, v, room, upTo, shown.events())
	if err != nil {
		return nil, err
	}
	b = append(b, `{"chunk":`...)
	b = shown.appendList(b, v, ag)
	b = append(b, `,"start":"`...)
	b = start.AppendToken(b)
	b = append(b, `","end":"`...)
	b = upTo.AppendToken(b)
	return append(b, `"}`...), nil
}

// appendMemberPresence writes m.presence events for users (offline for those who never
// set a presence).
func (sy *Syncer) appendMemberPresence(ctx context.Context, b []byte, users []string, nowMS int64) ([]byte, error) {
	slices.Sort(users)
	ps, err := sy.store.PresenceFor(ctx, users, -1, sy.notifier.Current())
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	byUser := make(map[string]*storage.Presence, len(ps))
	for i := range ps {
		byUser[ps[i].UserID] = &ps[i]
	}
	b = append(b, '[')
	for i, u := range users {
		if i > 0 {
			b = append(b, ',')
		}
		p := byUser[u]
		if p == nil {
			p = &storage.Presence{UserID: u, State: "offline", LastActiveTS: nowMS}
		}
		b = live.AppendPresence(b, p, nowMS)
	}
	return append(b, ']'), nil
}

// appendReceipts writes the room's receipts in (from, to] as m.receipt events; other
// users' private receipts are left out.
func (sy *Syncer) appendReceipts(ctx context.Context, b []byte, v *viewer, roomID string, from, to stream.Pos) ([]byte, error) {
	rs, err := sy.store.Receipts(ctx, roomID, from, to)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	b = append(b, '[')
	n := 0
	for _, r := range rs {
		if r.Type == "m.read.private" && r.UserID != v.reader.UserID {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, live.ReceiptItem(r).EDU...)
	}
	return append(b, ']'), nil
}

// appendRoomAccountData writes the user's account data for a room as {type, content} events.
func (sy *Syncer) appendRoomAccountData(ctx context.Context, b []byte, userID, roomID string) ([]byte, error) {
	all, err := sy.store.AccountData(ctx, userID, -1, sy.notifier.Current())
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	b = append(b, '[')
	n := 0
	for _, a := range all {
		if a.RoomID != roomID {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendAccountData(b, a)
	}
	return append(b, ']'), nil
}

func appendAccountData(b []byte, a storage.AccountData) []byte {
	b = append(b, `{"type":`...)
	b, _ = jsontext.AppendQuote(b, a.Type)
	b = append(b, `,"content":`...)
	b = append(b, a.Content...)
	return append(b, '}')
}

// GlobalInitialSync is the deprecated GET /initialSync (real users only).
func (sy *Syncer) GlobalInitialSync(ctx context.Context, sess *auth.Session, limit int, archived bool) ([]byte, error) {
	cur := sy.notifier.Current()
	ms, err := sy.store.MembershipsOf(ctx, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var rooms []jsontext.Value
	coMembers := []string{sess.UserID}
	var joinedRooms []string
	for _, m := range ms {
		switch m.Membership {
		case visibility.Join, visibility.Invite:
		case visibility.Leave, visibility.Ban:
			if !archived || m.Forgotten {
				continue
			}
		default:
			continue
		}
		b, members, err := sy.globalRoom(ctx, sess, m, cur, limit)
		if err != nil {
			return nil, err
		}
		if m.Membership == visibility.Join {
			joinedRooms = append(joinedRooms, m.RoomID)
			coMembers = append(coMembers, members...)
		}
		rooms = append(rooms, b)
	}
	pres, err := sy.globalPresence(ctx, sess, coMembers, cur)
	if err != nil {
		return nil, err
	}
	ad, err := sy.store.AccountData(ctx, sess.UserID, -1, cur)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var accountData []jsontext.Value
	for _, a := range ad {
		if a.RoomID == "" {
			accountData = append(accountData, appendAccountData(nil, a))
		}
	}
	rs, err := sy.store.ReceiptsForRooms(ctx, joinedRooms, -1, cur)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var receipts []jsontext.Value
	for _, r := range rs {
		if r.Type != "m.read.private" || r.UserID == sess.UserID {
			receipts = append(receipts, live.ReceiptItem(r).EDU)
		}
	}
	return json.Marshal(map[string]any{
		"rooms":        nonNil(rooms),
		"presence":     nonNil(pres),
		"account_data": nonNil(accountData),
		"receipts":     nonNil(receipts),
		"end":          cur.Token(),
	})
}

// globalRoom is one room of a global initialSync: the invite, or the messages, state and
// account data up to now (or up to the user's leave); with the room's joined members.
func (sy *Syncer) globalRoom(ctx context.Context, sess *auth.Session, m storage.Member, cur stream.Pos, limit int) (jsontext.Value, []string, error) {
	room, err := sy.hub.Room(ctx, m.RoomID)
	if err != nil {
		return nil, nil, mxerr.Internal(err)
	}
	info, err := sy.store.Room(ctx, m.RoomID)
	if err != nil {
		return nil, nil, mxerr.Internal(err)
	}
	v, err := sy.filteringViewer(ctx, sess, room, false)
	if err != nil {
		return nil, nil, err
	}
	b := []byte(`{"room_id":`)
	b, _ = jsontext.AppendQuote(b, m.RoomID)
	b = append(b, `,"membership":`...)
	b, _ = jsontext.AppendQuote(b, m.Membership)
	b = append(b, `,"visibility":`...)
	b, _ = jsontext.AppendQuote(b, directoryVisibility(info.Published))
	if m.Membership == visibility.Invite {
		inv, err := sy.store.EventByID(ctx, m.EventID)
		if err != nil {
			return nil, nil, mxerr.Internal(err)
		}
		b = append(b, `,"invite":`...)
		b = v.appendEvent(b, clientevent.Encode(&inv), visibility.Invite)
		return append(b, '}'), nil, nil
	}
	upTo := cur
	var members []string
	var state []storage.Event
	if m.Membership == visibility.Join {
		members = room.Joined()
		state, err = sy.store.CurrentState(ctx, m.RoomID)
	} else {
		upTo = m.Pos
		state, err = sy.store.StateAt(ctx, m.RoomID, upTo)
	}
	if err != nil {
		return nil, nil, mxerr.Internal(err)
	}
	b = append(b, `,"messages":`...)
	if b, err = sy.appendMessages(ctx, b, v, room, upTo, limit); err != nil {
		return nil, nil, err
	}
	b = append(b, `,"state":`...)
	b = sy.appendEvents(b, v, state)
	b = append(b, `,"account_data":`...)
	if b, err = sy.appendRoomAccountData(ctx, b, sess.UserID, m.RoomID); err != nil {
		return nil, nil, err
	}
	return append(b, '}'), members, nil
}

// globalPresence is the presence of the users the caller shares a room with, and their
// own even if they never set one (as in Synapse, sytest SYT-34: offline, active as of this
// request, as room initialSync shows members).
func (sy *Syncer) globalPresence(ctx context.Context, sess *auth.Session, users []string, cur stream.Pos) ([]jsontext.Value, error) {
	slices.Sort(users)
	users = slices.Compact(users)
	presence, err := sy.store.PresenceFor(ctx, users, -1, cur)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var pres []jsontext.Value
	now := sy.now().UnixMilli()
	own := false
	for i := range presence {
		own = own || presence[i].UserID == sess.UserID
		pres = append(pres, live.AppendPresence(nil, &presence[i], now))
	}
	if !own {
		pres = append(pres, live.AppendPresence(nil, &storage.Presence{UserID: sess.UserID, State: "offline", LastActiveTS: now}, now))
	}
	return pres, nil
}

func nonNil(v []jsontext.Value) []jsontext.Value {
	if v == nil {
		return []jsontext.Value{}
	}
	return v
}
