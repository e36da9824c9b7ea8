package notify

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/outbox"
	"porthole/internal/push"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// PushKind is the outbox kind of push gateway deliveries; the destination is a pusher ID.
const PushKind = "push"

// giveUpAfter is how long a notification is retried before it is dropped (Synapse's: after
// a day, a late phone notification is worse than none).
const giveUpAfter = 24 * time.Hour

// maxBadgeRooms bounds the rooms a badge count looks at.
const maxBadgeRooms = 2000

// pushItem is an outbox payload: an event to notify of, or (Badge) a badge update.
type pushItem struct {
	EventID string         `json:"e,omitempty"`
	RoomID  string         `json:"r,omitempty"`
	Actions jsontext.Value `json:"a,omitempty"`
	Badge   bool           `json:"b,omitempty"`
}

// OutboxKind is how the outbox delivers pushes: one notification per request, backing
// off from 1 s to an hour as Synapse's pushers do.
func (s *Service) OutboxKind() outbox.Kind {
	return outbox.Kind{
		Name:       PushKind,
		Deliver:    s.deliver,
		Timeout:    40 * time.Second,
		MinBackoff: time.Second,
		MaxBackoff: time.Hour,
	}
}

// SetOutbox gives the service the outbox its pushes go through (OutboxKind registered).
func (s *Service) SetOutbox(ob *outbox.Outbox) { s.ob = ob }

// RefusedAddresses counts gateway connections refused as not public.
func (s *Service) RefusedAddresses() int64 { return s.gw.refused.Load() }

// queuePushes adds, in the event's transaction, a push for every notified member to each
// of their pushers.
func (s *Service) queuePushes(ctx context.Context, tx storage.Tx, ev *storage.Event, roomID string, members []push.Member, results []*push.Matched) error {
	if s.ob == nil {
		return nil
	}
	var msgs []outbox.Message
	s.pushersMu.RLock()
	if len(s.pushers) > 0 {
		for i := range members {
			if results[i] == nil || !results[i].Notify {
				continue
			}
			ids := s.pushers[members[i].UserID]
			if len(ids) == 0 {
				continue
			}
			payload, _ := json.Marshal(pushItem{EventID: ev.ID, RoomID: roomID, Actions: jsontext.Value(results[i].Actions)})
			for _, id := range ids {
				msgs = append(msgs, outbox.Message{Kind: PushKind, Destination: strconv.FormatInt(id, 10), Payload: payload})
			}
		}
	}
	s.pushersMu.RUnlock()
	if len(msgs) == 0 {
		return nil
	}
	return s.ob.Enqueue(ctx, tx, msgs...)
}

// ReceiptSent queues badge updates to the user's pushers after a read receipt changed
// their counts (as Synapse does; its gateway then clears the phone's badge).
func (s *Service) ReceiptSent(ctx context.Context, userID string) {
	ids := s.pusherIDs(userID)
	if len(ids) == 0 || s.ob == nil {
		return
	}
	payload, _ := json.Marshal(pushItem{Badge: true})
	msgs := make([]outbox.Message, len(ids))
	for i, id := range ids {
		msgs[i] = outbox.Message{Kind: PushKind, Destination: strconv.FormatInt(id, 10), Payload: payload}
	}
	if err := s.store.Write(ctx, func(tx storage.Tx) error { return s.ob.Enqueue(ctx, tx, msgs...) }); err != nil {
		s.log.Warn("queueing badge updates", "user", userID, "err", err)
	}
}

// deliver sends one queued notification to its pusher's gateway.
func (s *Service) deliver(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
	it := batch[0]
	id, err := strconv.ParseInt(dest, 10, 64)
	if err != nil {
		return outbox.Drop, fmt.Errorf("bad pusher destination %q", dest)
	}
	p, err := s.store.Pusher(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return outbox.Drop, errors.New("the pusher is gone")
	} else if err != nil {
		return outbox.RetryLater, err
	}
	var item pushItem
	if err := json.Unmarshal(it.Payload, &item); err != nil {
		return outbox.Drop, fmt.Errorf("bad push payload: %w", err)
	}
	if age := time.Since(it.Enqueued); age > giveUpAfter {
		s.log.Warn("giving up on a push", "user", p.UserID, "app_id", p.AppID, "event", item.EventID, "age", age.Round(time.Minute))
		return outbox.Drop, errors.New("older than a day")
	}
	var n *gatewayNotification
	var badge int
	if item.Badge {
		var err error
		if badge, err = s.badge(ctx, p.UserID); err != nil {
			return outbox.RetryLater, err
		}
		s.badgeMu.Lock()
		last, sent := s.lastBadge[p.ID]
		s.badgeMu.Unlock()
		if sent && last == badge {
			return outbox.Delivered, nil // nothing new to show
		}
		n = &gatewayNotification{Counts: &gatewayCounts{Unread: badge}}
	} else {
		ev, err := s.store.EventByID(ctx, item.EventID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && ev.RedactedBecause != nil) {
			return outbox.Drop, errors.New("the event is gone or redacted")
		} else if err != nil {
			return outbox.RetryLater, err
		}
		// The outbox is woken at commit, a moment before the event is published to the
		// rooms in memory that the badge counts from: let the badge include the event.
		s.hub.WaitPublished(ctx, ev.Pos, 2*time.Second)
		if badge, err = s.badge(ctx, p.UserID); err != nil {
			return outbox.RetryLater, err
		}
		if n, err = s.eventNotification(ctx, &p, &ev, item.Actions, badge); err != nil {
			return outbox.RetryLater, err
		}
	}
	n.Devices = []gatewayDevice{deviceOf(&p, n.tweaks)}
	url := gjson.GetBytes(p.Data, "url").String()
	rejected, err := s.gw.post(ctx, url, n)
	if err != nil {
		return outbox.RetryLater, err
	}
	if slices.Contains(rejected, p.PushKey) {
		s.log.Info("push gateway rejected a pushkey: removing the pusher", "user", p.UserID, "app_id", p.AppID)
		if err := s.removeRejected(ctx, &p); err != nil {
			return outbox.RetryLater, err
		}
		return outbox.Delivered, nil
	}
	s.badgeMu.Lock()
	if len(s.lastBadge) > 100_000 {
		clear(s.lastBadge)
	}
	s.lastBadge[p.ID] = badge
	s.badgeMu.Unlock()
	return outbox.Delivered, nil
}

func (s *Service) removeRejected(ctx context.Context, p *storage.Pusher) error {
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		if err := tx.DeletePusherByID(ctx, p.ID); err != nil {
			return err
		}
		if err := s.forgetPusherQueue(ctx, tx, p.ID); err != nil {
			return err
		}
		return s.announcePushers(ctx, tx, []string{p.UserID})
	})
	if err != nil {
		return err
	}
	return s.reloadPushers(ctx, p.UserID)
}

// The Push Gateway API's notification (mautrix's pushgateway.PushNotification lacks
// membership, and omits a zero unread count, which a badge reset must send).
type gatewayNotification struct {
	ID                string          `json:"id,omitempty"` // deprecated copy of event_id, still read (sytest)
	EventID           string          `json:"event_id,omitempty"`
	RoomID            string          `json:"room_id,omitempty"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	Membership        string          `json:"membership,omitempty"`
	UserIsTarget      *bool           `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio,omitempty"`
	Content           jsontext.Value  `json:"content,omitempty"`
	Counts            *gatewayCounts  `json:"counts,omitempty"`
	Devices           []gatewayDevice `json:"devices"`

	tweaks map[string]jsontext.Value
}

type gatewayCounts struct {
	Unread int `json:"unread"`
}

type gatewayDevice struct {
	AppID     string                    `json:"app_id"`
	PushKey   string                    `json:"pushkey"`
	PushKeyTS int64                     `json:"pushkey_ts"`
	Data      map[string]jsontext.Value `json:"data"` // always an object, as Synapse sends it
	Tweaks    map[string]jsontext.Value `json:"tweaks,omitempty"`
}

// deviceOf is the devices entry for a pusher: its data without the url (the spec).
func deviceOf(p *storage.Pusher, tweaks map[string]jsontext.Value) gatewayDevice {
	data := map[string]jsontext.Value{}
	json.Unmarshal(p.Data, &data)
	delete(data, "url")
	return gatewayDevice{AppID: p.AppID, PushKey: p.PushKey, PushKeyTS: p.PushKeyTS / 1000, Data: data, Tweaks: tweaks}
}

// tweaksOf collects the set_tweak actions (a tweak without a value is true).
func tweaksOf(actions jsontext.Value) map[string]jsontext.Value {
	var list []jsontext.Value
	json.Unmarshal(actions, &list)
	var out map[string]jsontext.Value
	for _, a := range list {
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    *jsontext.Value `json:"value"`
		}
		if a.Kind() != '{' || json.Unmarshal(a, &t) != nil || t.SetTweak == "" {
			continue
		}
		if out == nil {
			out = map[string]jsontext.Value{}
		}
		if t.Value == nil {
			out[t.SetTweak] = jsontext.Value("true")
		} else {
			out[t.SetTweak] = *t.Value
		}
	}
	return out
}

// eventNotification builds the notification of an event in the pusher's format.
func (s *Service) eventNotification(ctx context.Context, p *storage.Pusher, ev *storage.Event, actions jsontext.Value, badge int) (*gatewayNotification, error) {
	tweaks := tweaksOf(actions)
	prio := "low"
	// High priority only when the phone will make itself heard, or may (encrypted: the
	// phone decides), as Synapse.
	if ev.Type == "m.room.encrypted" || tweaks["sound"] != nil || (tweaks["highlight"] != nil && string(tweaks["highlight"]) != "false") {
		prio = "high"
	}
	n := &gatewayNotification{EventID: ev.ID, RoomID: ev.RoomID, Prio: prio, Counts: &gatewayCounts{Unread: badge}}
	if gjson.GetBytes(p.Data, "format").String() == "event_id_only" {
		return n, nil // no tweaks either
	}
	n.ID, n.Type, n.Sender, n.tweaks = ev.ID, ev.Type, ev.Sender, tweaks
	n.Content = jsontext.Value(clientevent.Content(ev))
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		n.Membership = ev.Membership
		target := *ev.StateKey == p.UserID
		n.UserIsTarget = &target
	}
	state, err := s.store.StateAt(ctx, ev.RoomID, ev.Pos,
		storage.StateKeyOf{Type: "m.room.name"}, storage.StateKeyOf{Type: "m.room.canonical_alias"},
		storage.StateKeyOf{Type: "m.room.member", StateKey: ev.Sender})
	if err != nil {
		return nil, err
	}
	var name, alias string
	for i := range state {
		c := clientevent.Content(&state[i])
		switch state[i].Type {
		case "m.room.name":
			name = gjson.GetBytes(c, "name").String()
		case "m.room.canonical_alias":
			alias = gjson.GetBytes(c, "alias").String()
		case "m.room.member":
			n.SenderDisplayName = gjson.GetBytes(c, "displayname").String()
		}
	}
	// The room's human-readable name: its name, else its alias (Synapse stopped sending
	// room_alias apart).
	n.RoomName = name
	if n.RoomName == "" {
		n.RoomName = alias
	}
	return n, nil
}

// badge is the number Synapse shows on a phone's icon: rooms the user is invited to, plus
// rooms with unread notifications (one each, Synapse's default group_by_room).
func (s *Service) badge(ctx context.Context, userID string) (int, error) {
	ms, err := s.store.MembershipsOf(ctx, userID)
	if err != nil {
		return 0, err
	}
	var receipts map[string]map[string]stream.Pos
	badge := 0
	for i, m := range ms {
		if i >= maxBadgeRooms {
			break
		}
		switch m.Membership {
		case "invite":
			badge++
		case "join":
			var u live.Unread
			ok := false
			if r := s.hub.LoadedRoom(m.RoomID); r != nil {
				var rp live.ReadPoints
				if u, rp, ok = r.Unread(userID, false); !ok {
					if u, err = live.UnreadFromStorage(ctx, s.store, m.RoomID, userID, rp, false); err != nil {
						return 0, err
					}
				}
			} else {
				if receipts == nil {
					if receipts, err = s.receiptsByRoom(ctx, userID); err != nil {
						return 0, err
					}
				}
				rp := readPointsFrom(m.JoinedPos, receipts[m.RoomID])
				if u, err = live.UnreadFromStorage(ctx, s.store, m.RoomID, userID, rp, false); err != nil {
					return 0, err
				}
			}
			if u.Total.Notify > 0 {
				badge++
			}
		}
	}
	return badge, nil
}

func (s *Service) receiptsByRoom(ctx context.Context, userID string) (map[string]map[string]stream.Pos, error) {
	rs, err := s.store.UserReceipts(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]stream.Pos{}
	for _, r := range rs {
		if out[r.RoomID] == nil {
			out[r.RoomID] = map[string]stream.Pos{}
		}
		out[r.RoomID][r.ThreadID] = max(out[r.RoomID][r.ThreadID], r.EventPos)
	}
	return out, nil
}

// readPointsFrom builds a room's read points from storage: the join and the receipts by
// thread ("" unthreaded, "main" the main timeline).
func readPointsFrom(joined stream.Pos, receipts map[string]stream.Pos) live.ReadPoints {
	rp := live.ReadPoints{Since: max(joined, receipts[""])}
	for t, p := range receipts {
		if t == "" || p <= rp.Since {
			continue
		}
		if t == live.MainThread {
			t = ""
		}
		if rp.Threads == nil {
			rp.Threads = map[string]stream.Pos{}
		}
		rp.Threads[t] = p
	}
	return rp
}
