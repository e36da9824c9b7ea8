package rooms

import (
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

func notInRoom() *mxerr.Error { return mxerr.Forbidden("You are not in this room") }

func checkEventType(t string) error {
	if t == "" || len(t) > 255 {
		return mxerr.InvalidParam("Invalid event type")
	}
	return nil
}

// Send stores a message event. The same (device, room, transaction ID) always yields the
// event stored the first time.
func (s *Service) Send(ctx context.Context, sess *auth.Session, roomID, evType, txnID string, content jsontext.Value) (string, error) {
	if !ValidRoomID(roomID) {
		return "", mxerr.InvalidParam("Invalid room ID")
	}
	if err := checkEventType(evType); err != nil {
		return "", err
	}
	if txnID == "" || len(txnID) > 255 {
		return "", mxerr.InvalidParam("Invalid transaction ID")
	}
	ev, err := s.persistOne(ctx, roomID, Proto{Type: evType, Content: content, Sender: sess.UserID, TxnID: txnID, TxnPath: "send/" + evType, DeviceID: sess.DeviceID, TS: sess.Timestamp})
	if err != nil {
		return "", roomError(err, notInRoom())
	}
	return ev.ID, nil
}

// SetState stores a state event. Sending the same content again, as the same sender,
// returns the current event and stores nothing (as Synapse does).
func (s *Service) SetState(ctx context.Context, sess *auth.Session, roomID, evType, stateKey string, content jsontext.Value) (string, error) {
	if !ValidRoomID(roomID) {
		return "", mxerr.InvalidParam("Invalid room ID")
	}
	if err := checkEventType(evType); err != nil {
		return "", err
	}
	if err := s.validateState(ctx, roomID, evType, content); err != nil {
		return "", err
	}
	if evType == "m.room.member" && sess.IsGuest {
		// Through this route as through /join and /leave: a guest changes only its own
		// membership, only to join or leave, and its join says it is a guest, so that
		// revoking guest access finds it.
		membership := stringField(content, "membership")
		if stateKey != sess.UserID || (membership != visibility.Join && membership != visibility.Leave) {
			return "", mxerr.Forbidden("Guest access not allowed")
		}
		if membership == visibility.Join {
			var err error
			if content, err = withField(content, "kind", "guest"); err != nil {
				return "", err
			}
		}
	}
	var eventID string
	_, err := s.write(ctx, roomID, func(pc *persistContext) error {
		key := storage.StateKeyOf{Type: evType, StateKey: stateKey}
		if cur, err := pc.tx.CurrentState(ctx, roomID, key); err != nil {
			return err
		} else if len(cur) == 1 && cur[0].Sender == sess.UserID && sameJSON(clientevent.Content(&cur[0]), content) {
			eventID = cur[0].ID
			return nil
		}
		if evType == "m.room.member" && stateKey == sess.UserID && sess.IsGuest && stringField(content, "membership") == visibility.Join {
			ga, err := pc.stateContent(storage.StateKeyOf{Type: "m.room.guest_access"})
			if err != nil {
				return err
			}
			if stringField(ga, "guest_access") != "can_join" {
				return mxerr.Forbidden("Guest access not allowed")
			}
		}
		ev, err := pc.persist(Proto{Type: evType, StateKey: &stateKey, Content: content, Sender: sess.UserID, TS: sess.Timestamp})
		if err != nil {
			return err
		}
		eventID = ev.ID
		return nil
	})
	if err != nil {
		return "", roomError(err, notInRoom())
	}
	return eventID, nil
}

// validateState checks state contents the server gives meaning to.
func (s *Service) validateState(ctx context.Context, roomID, evType string, content jsontext.Value) error {
	switch evType {
	case "m.room.canonical_alias":
		var c struct {
			Alias      *string  `json:"alias"`
			AltAliases []string `json:"alt_aliases"`
		}
		if err := json.Unmarshal(content, &c); err != nil {
			return mxerr.BadJSON("Invalid m.room.canonical_alias content")
		}
		aliases := c.AltAliases
		if c.Alias != nil {
			aliases = append(aliases, *c.Alias)
		}
		for _, a := range aliases {
			if !ValidAlias(a) {
				return mxerr.InvalidParam("Invalid room alias " + a)
			}
			row, err := s.store.AliasRoom(ctx, a)
			if errors.Is(err, storage.ErrNotFound) || (err == nil && row.RoomID != roomID) {
				return &mxerr.Error{Status: 400, Code: "M_BAD_ALIAS", Message: "Alias " + a + " does not point to this room"}
			} else if err != nil {
				return mxerr.Internal(err)
			}
		}
	case "m.room.name":
		if len(stringField(content, "name")) > 255 {
			return mxerr.BadJSON("Room name too long")
		}
	}
	return nil
}

// powerLevels reads the room's power levels, aware of room v12's privileged creators.
func powerLevels(ctx context.Context, r storage.Reader, room storage.Room) (*event.PowerLevelsEventContent, error) {
	evs, err := r.CurrentState(ctx, room.ID, storage.StateKeyOf{Type: "m.room.power_levels"}, storage.StateKeyOf{Type: "m.room.create"})
	if err != nil {
		return nil, err
	}
	pl := &event.PowerLevelsEventContent{}
	for i := range evs {
		switch evs[i].Type {
		case "m.room.power_levels":
			if err := json.Unmarshal(clientevent.Content(&evs[i]), pl); err != nil {
				return nil, err
			}
		case "m.room.create":
			parsed, err := parsePDU(id.RoomVersion(room.Version), evs[i].PDU)
			if err != nil {
				return nil, err
			}
			if pl.CreateEvent, err = parsed.ToClientEvent(id.RoomVersion(room.Version)); err != nil {
				return nil, err
			}
		}
	}
	return pl, nil
}

func stateType(t string) event.Type { return event.Type{Type: t, Class: event.StateEventType} }

// withField returns a JSON object with key set to the string value.
func withField(content jsontext.Value, key, value string) (jsontext.Value, error) {
	var c map[string]jsontext.Value
	if err := json.Unmarshal(content, &c); err != nil {
		return nil, mxerr.BadJSON("Content must be a JSON object")
	}
	c[key] = mustJSON(value)
	return mustJSON(c), nil
}
