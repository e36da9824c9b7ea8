package appservice

import (
	"context"
	"encoding/json"

	"porthole/internal/outbox"
	"porthole/internal/storage"
)

// Which events a service gets (the spec, and Synapse's rules): every event sent by a
// user it is interested in (its sender or a user of its namespaces), every membership
// event of such a user (invites included), and every event of a room it is interested
// in: a room whose ID or one of whose aliases is in its namespaces, or where one of its
// users is joined. Membership counts local users only; remote users never make a room
// interesting.

// queued is an outbox payload: an event (by ID: the event is read when the transaction is
// built), an ephemeral event, or a to-device message (both as they are sent).
type queued struct {
	Event    string          `json:"e,omitempty"`
	EDU      json.RawMessage `json:"x,omitempty"`
	ToDevice json.RawMessage `json:"d,omitempty"`
}

// memberInterest is, for one room's member list (live's version of it), which services
// are interested through a joined member.
type memberInterest struct {
	version    uint64
	interested []bool // by index in pushed
}

// maxCachedRooms bounds the rooms whose member interest is kept.
const maxCachedRooms = 10_000

// EventPersisted queues an event being written in tx for every service interested in it
// (rooms' persist path calls it for local and remote events alike). prevHead is the room's
// head before the event: the room's memory is current when it applied it last.
func (s *Service) EventPersisted(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event) error {
	if len(s.pushed) == 0 || s.ob == nil {
		return nil
	}
	var rooms []bool
	var msgs []outbox.Message
	var payload []byte
	for i, reg := range s.pushed {
		interested := reg.InterestedInUser(ev.Sender) ||
			(ev.Type == "m.room.member" && ev.StateKey != nil && reg.InterestedInUser(*ev.StateKey)) ||
			reg.RoomInNamespace(roomID)
		if !interested {
			if rooms == nil {
				var err error
				if rooms, err = s.roomInterest(ctx, tx, roomID, prevHead); err != nil {
					return err
				}
			}
			interested = rooms[i]
		}
		if interested {
			if payload == nil {
				payload, _ = json.Marshal(queued{Event: ev.ID})
			}
			msgs = append(msgs, outbox.Message{Kind: Kind, Destination: reg.ID, Payload: payload})
		}
	}
	return s.ob.Enqueue(ctx, tx, msgs...)
}

// roomInterest reports, per pushed service, whether it is interested in a room: through
// its room namespaces, its alias namespaces (the room's aliases, read in tx), or a joined
// local member in its user namespaces.
func (s *Service) roomInterest(ctx context.Context, tx storage.Tx, roomID, prevHead string) ([]bool, error) {
	out, err := s.memberInterest(ctx, tx, roomID, prevHead)
	if err != nil {
		return nil, err
	}
	var aliases []string
	aliasesRead := false
	for i, reg := range s.pushed {
		if out[i] {
			continue
		}
		if reg.RoomInNamespace(roomID) {
			out[i] = true
			continue
		}
		if !reg.HasAliasNamespaces() {
			continue
		}
		if !aliasesRead {
			if aliases, err = tx.RoomAliases(ctx, roomID); err != nil {
				return nil, err
			}
			aliasesRead = true
		}
		for _, a := range aliases {
			if reg.AliasInNamespace(a) {
				out[i] = true
				break
			}
		}
	}
	return out, nil
}

// memberInterest is roomInterest's membership part, a fresh slice. For a room whose
// memory is current, it is computed once per member list.
func (s *Service) memberInterest(ctx context.Context, tx storage.Tx, roomID, prevHead string) ([]bool, error) {
	var users []string
	var version uint64
	if r := s.hub.LoadedRoom(roomID); r != nil {
		members, v, fresh := r.JoinedMembers(prevHead)
		if fresh {
			version = v
			s.interestMu.Lock()
			mi := s.interest[roomID]
			s.interestMu.Unlock()
			if mi != nil && mi.version == v {
				return append([]bool(nil), mi.interested...), nil
			}
			users = make([]string, len(members))
			for i := range members {
				users[i] = members[i].UserID
			}
		}
	}
	if version == 0 {
		// Not in memory, or another node wrote to it since: read the members in tx (which
		// also sees the events this transaction wrote before).
		ms, err := tx.Members(ctx, roomID, "join")
		if err != nil {
			return nil, err
		}
		users = make([]string, len(ms))
		for i := range ms {
			users[i] = ms[i].UserID
		}
	}
	out := make([]bool, len(s.pushed))
	for _, u := range users {
		if !s.isLocal(u) {
			continue
		}
		for i, reg := range s.pushed {
			if !out[i] && reg.InterestedInUser(u) {
				out[i] = true
			}
		}
	}
	if version != 0 {
		s.interestMu.Lock()
		if len(s.interest) >= maxCachedRooms {
			clear(s.interest)
		}
		s.interest[roomID] = &memberInterest{version: version, interested: append([]bool(nil), out...)}
		s.interestMu.Unlock()
	}
	return out, nil
}
