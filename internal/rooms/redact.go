package rooms

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"

	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
)

// Redact stores an m.room.redaction of eventID (PUT /redact). It takes the same path as a
// redaction sent through /send or /state: see prepareRedaction and checkRedaction.
func (s *Service) Redact(ctx context.Context, sess *auth.Session, roomID, eventID, txnID, reason string) (string, error) {
	if !ValidRoomID(roomID) {
		return "", mxerr.InvalidParam("Invalid room ID")
	}
	if !validEventID(eventID) {
		return "", mxerr.InvalidParam("Invalid event ID")
	}
	content := map[string]any{}
	if reason != "" {
		content["reason"] = reason
	}
	ev, err := s.persistOne(ctx, roomID, Proto{Type: "m.room.redaction", Content: mustJSON(content), Sender: sess.UserID,
		Redacts: eventID, TxnID: txnID, TxnPath: "redact/" + eventID, DeviceID: sess.DeviceID})
	if err != nil {
		return "", roomError(err, notInRoom())
	}
	return ev.ID, nil
}

func validEventID(eventID string) bool {
	return len(eventID) > 1 && len(eventID) <= 255 && eventID[0] == '$'
}

// prepareRedaction finds the target of an m.room.redaction, whichever route it came by:
// Proto.Redacts (the /redact route) or content.redacts (/send, /state). It puts the target
// where the room version wants it: in content from room v11 on, else at the top level
// (taken out of content, as MSC4169 does for /send in older rooms).
func prepareRedaction(p *Proto, version id.RoomVersion) error {
	c := map[string]jsontext.Value{}
	if len(p.Content) > 0 {
		if err := json.Unmarshal(p.Content, &c); err != nil || c == nil {
			return mxerr.BadJSON("Event content must be a JSON object")
		}
	}
	if raw, ok := c["redacts"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return mxerr.BadJSON("redacts must be an event ID")
		}
		if p.Redacts == "" {
			p.Redacts = s
		} else if s != p.Redacts {
			return mxerr.BadJSON("redacts in the content does not match the event being redacted")
		}
	}
	if p.Redacts == "" {
		return mxerr.BadJSON("A redaction needs the ID of the event it redacts (redacts)")
	}
	if !validEventID(p.Redacts) {
		return mxerr.InvalidParam("Invalid event ID " + p.Redacts)
	}
	if version.RedactsInContent() {
		c["redacts"] = mustJSON(p.Redacts)
	} else {
		delete(c, "redacts")
	}
	p.Content = mustJSON(c)
	return nil
}

// checkRedaction applies the server's redaction rules to an event the auth rules allowed
// (room versions 3 and later let any member send a redaction; servers decide whether to
// apply it): users redact their own events, and others' with the room's redact power; the
// create event and server ACLs are never redacted, nor events of other rooms.
func checkRedaction(ctx context.Context, r storage.Reader, room storage.Room, sender, target string) error {
	orig, err := r.EventByID(ctx, target)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if found {
		switch {
		case orig.RoomID != room.ID:
			return mxerr.InvalidParam("Event " + target + " is not in this room")
		case orig.Type == "m.room.create":
			return mxerr.Forbidden("Redacting create events is not permitted")
		case orig.Type == "m.room.server_acl" && orig.StateKey != nil:
			return mxerr.Forbidden("Redacting server ACL events is not permitted")
		}
	}
	pl, err := powerLevels(ctx, r, room)
	if err != nil {
		return err
	}
	if pl.GetUserLevel(id.UserID(sender)) >= pl.Redact() {
		return nil
	}
	if !found {
		return mxerr.NotFound("Could not find event " + target)
	}
	if orig.Sender != sender {
		return mxerr.Forbidden("You don't have permission to redact events")
	}
	return nil
}

// applyRedaction prunes the target event in storage (the room version's algorithm) and
// every copy of its content: the next state event of the same key carries it as
// unsigned.prev_content. It returns the changed events' new stored forms (none when the
// target is unknown).
func (pc *persistContext) applyRedaction(redaction *storage.Event, target string) ([]*storage.Event, error) {
	ctx, tx := pc.ctx, pc.tx
	orig, err := tx.EventByID(ctx, target)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && orig.RoomID != pc.room.ID) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	pruned, err := roomversion.Redact(id.RoomVersion(pc.room.Version), orig.PDU)
	if err != nil {
		return nil, err
	}
	because := clientevent.Encode(redaction).JSON(redaction.OriginTS, "", clientevent.Reader{})
	if err := tx.Redact(ctx, target, pruned, because); err != nil {
		return nil, err
	}
	if err := pc.dropRelation(target); err != nil {
		return nil, err
	}
	orig.PDU, orig.RedactedBecause = pruned, because
	changed := []*storage.Event{&orig}
	if orig.StateKey == nil {
		return changed, nil
	}
	if orig.Type == "m.room.guest_access" {
		pc.guestAccessChanged = true
	}
	next, err := tx.NextStateEvent(ctx, pc.room.ID, storage.StateKeyOf{Type: orig.Type, StateKey: *orig.StateKey}, orig.Pos)
	if errors.Is(err, storage.ErrNotFound) {
		return changed, nil
	} else if err != nil {
		return nil, err
	}
	unsigned := map[string]jsontext.Value{}
	if len(next.Unsigned) > 0 {
		if err := json.Unmarshal(next.Unsigned, &unsigned); err != nil {
			return nil, err
		}
	}
	if _, ok := unsigned["prev_content"]; !ok {
		return changed, nil
	}
	unsigned["prev_content"] = jsontext.Value(clientevent.Content(&orig))
	if next.Unsigned, err = json.Marshal(unsigned, json.Deterministic(true)); err != nil {
		return nil, err
	}
	if err := tx.SetUnsigned(ctx, next.ID, next.Unsigned); err != nil {
		return nil, err
	}
	return append(changed, &next), nil
}

// enforceGuestAccess makes local guests leave when the room's effective guest access is
// no longer can_join, however that came about (a new m.room.guest_access event, or a
// redaction that stripped the current one).
func (pc *persistContext) enforceGuestAccess() error {
	ga, err := pc.stateContent(storage.StateKeyOf{Type: "m.room.guest_access"})
	if err != nil || stringField(ga, "guest_access") == "can_join" {
		return err
	}
	return pc.kickGuests()
}
