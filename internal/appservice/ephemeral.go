package appservice

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"porthole/internal/live"
	"porthole/internal/outbox"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// Ephemeral data (MSC2409, in the spec since v1.13) goes to the services whose
// registrations ask for it (receive_ephemeral, or the unstable push_ephemeral), queued in
// the transaction that wrote it, like events:
//   - typing and receipts of rooms the service is interested in (private receipts only
//     of its own users);
//   - presence of its users and of users who share an interesting room with it;
//   - to-device messages to its users (de.sorunome.msc2409.to_device; MSC4203).
// Room interest uses the room's memory as it is: ephemeral data is not worth a read of
// the member list on every keystroke.

// toDeviceEvent is a to-device message as a service receives it.
type toDeviceEvent struct {
	Type       string          `json:"type"`
	Sender     string          `json:"sender"`
	Content    json.RawMessage `json:"content"`
	ToUserID   string          `json:"to_user_id"`
	ToDeviceID string          `json:"to_device_id"`
}

// CommitObserved queues a commit's ephemeral data for the services that asked for it (the
// live hub's commit observer). Room events are queued by EventPersisted.
func (s *Service) CommitObserved(ctx context.Context, tx storage.Tx, pubs []live.Published) error {
	if s.ob == nil || !s.anyEphemeral {
		return nil
	}
	var msgs []outbox.Message
	add := func(i int, q queued) {
		payload, _ := json.Marshal(q)
		msgs = append(msgs, outbox.Message{Kind: Kind, Destination: s.pushed[i].ID, Payload: payload})
	}
	now := time.Now().UnixMilli()
	seenPresence := map[string]bool{}
	for pi := range pubs {
		p := &pubs[pi]
		switch {
		case p.Event == nil && p.RoomID != "" && (p.Item.Kind == live.KindTyping || p.Item.Kind == live.KindReceipt):
			rooms, err := s.ephemeralRoomInterest(ctx, tx, p.RoomID)
			if err != nil {
				return err
			}
			for i, reg := range s.pushed {
				if !wantsEphemeral(reg) || !rooms[i] {
					continue
				}
				if p.Item.Private && !reg.InterestedInUser(p.Item.UserID) {
					continue
				}
				add(i, queued{EDU: p.Item.EDU})
			}
		case p.Item.Kind == live.KindPresence && p.Item.Presence != nil:
			pr := p.Item.Presence
			key := pr.UserID + "\x00" + strconv.FormatInt(int64(pr.Pos), 10)
			if seenPresence[key] {
				continue
			}
			seenPresence[key] = true
			interested, err := s.presenceInterest(ctx, tx, pr.UserID)
			if err != nil {
				return err
			}
			var edu []byte
			for i, reg := range s.pushed {
				if wantsEphemeral(reg) && interested[i] {
					if edu == nil {
						edu = live.AppendPresence(nil, pr, now)
					}
					add(i, queued{EDU: edu})
				}
			}
		}
		if p.E2EE != nil {
			for _, m := range p.E2EE.Messages {
				for i, reg := range s.pushed {
					if !wantsEphemeral(reg) || !reg.InterestedInUser(m.UserID) {
						continue
					}
					raw, _ := json.Marshal(toDeviceEvent{Type: m.Type, Sender: m.Sender, Content: m.Content, ToUserID: m.UserID, ToDeviceID: m.DeviceID})
					add(i, queued{ToDevice: raw})
				}
			}
		}
	}
	return s.ob.Enqueue(ctx, tx, msgs...)
}

func wantsEphemeral(reg *Registration) bool { return reg.Ephemeral || reg.UnstableEphemeral }

// ephemeralRoomInterest is roomInterest as of the room's memory (or storage when it is
// not in memory).
func (s *Service) ephemeralRoomInterest(ctx context.Context, tx storage.Tx, roomID string) ([]bool, error) {
	head := ""
	if r := s.hub.LoadedRoom(roomID); r != nil {
		head = r.Head()
	}
	return s.roomInterest(ctx, tx, roomID, head)
}

// maxPresenceRooms bounds the rooms looked at for one presence change.
const maxPresenceRooms = 200

// presenceInterest reports, per pushed service, whether it wants a user's presence: the
// user is one of its own, or is joined to a room the service is interested in.
func (s *Service) presenceInterest(ctx context.Context, tx storage.Tx, userID string) ([]bool, error) {
	out := make([]bool, len(s.pushed))
	missing := false
	for i, reg := range s.pushed {
		out[i] = reg.InterestedInUser(userID)
		missing = missing || (!out[i] && wantsEphemeral(reg))
	}
	if !missing {
		return out, nil
	}
	ms, err := tx.MembershipsOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	looked := 0
	for _, m := range ms {
		if m.Membership != visibility.Join || looked >= maxPresenceRooms {
			continue
		}
		looked++
		rooms, err := s.ephemeralRoomInterest(ctx, tx, m.RoomID)
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i] = out[i] || rooms[i]
		}
	}
	return out, nil
}
