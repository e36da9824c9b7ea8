package rooms

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"strings"

	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// ValidRoomID checks the grammar of a room ID ("!opaque:server", or room v12's "!hash").
func ValidRoomID(roomID string) bool {
	if len(roomID) < 2 || len(roomID) > 255 || roomID[0] != '!' {
		return false
	}
	return !strings.ContainsAny(roomID, " \t\n\x00/")
}

// ValidUserID checks the grammar of a user ID.
func ValidUserID(userID string) bool {
	if len(userID) > 255 || strings.HasPrefix(userID, "@:") {
		return false
	}
	_, _, err := id.UserID(userID).ParseAndValidateRelaxed()
	return err == nil
}

// checkLocalUser refuses user IDs that are malformed, remote (there is no federation) or
// unknown.
func (s *Service) checkLocalUser(ctx context.Context, userID string) error {
	if !ValidUserID(userID) {
		return mxerr.InvalidParam("Invalid user ID " + userID)
	}
	if id.UserID(userID).Homeserver() != s.cfg.ServerName {
		return mxerr.Forbidden("This server does not federate: cannot reach " + userID)
	}
	if _, err := s.userOrAsk(ctx, userID); errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Unknown user " + userID)
	} else if err != nil {
		return asMatrixError(err)
	}
	return nil
}

// memberContent builds a member event's content with the user's profile.
func (s *Service) memberContent(ctx context.Context, userID, membership, reason string, guest bool) jsontext.Value {
	c := map[string]any{"membership": membership}
	if u, err := s.store.User(ctx, userID); err == nil {
		if u.DisplayName != nil {
			c["displayname"] = *u.DisplayName
		}
		if u.AvatarURL != nil {
			c["avatar_url"] = *u.AvatarURL
		}
	}
	if guest {
		c["kind"] = "guest"
	}
	if reason != "" {
		c["reason"] = reason
	}
	return mustJSON(c)
}

func (s *Service) inviteContent(ctx context.Context, userID string, isDirect bool, reason string) jsontext.Value {
	c := map[string]any{}
	json.Unmarshal(s.memberContent(ctx, userID, "invite", reason, false), &c)
	if isDirect {
		c["is_direct"] = true
	}
	return mustJSON(c)
}

// ResolveRoom turns a room ID or a local alias into a room ID.
func (s *Service) ResolveRoom(ctx context.Context, roomIDOrAlias string) (string, error) {
	switch {
	case strings.HasPrefix(roomIDOrAlias, "#"):
		a, err := s.aliasOrAsk(ctx, roomIDOrAlias)
		if errors.Is(err, storage.ErrNotFound) {
			return "", mxerr.NotFound("Room alias " + roomIDOrAlias + " not found")
		} else if err != nil {
			return "", asMatrixError(err)
		}
		return a.RoomID, nil
	case ValidRoomID(roomIDOrAlias):
		return roomIDOrAlias, nil
	}
	return "", mxerr.InvalidParam("Invalid room ID or alias: " + roomIDOrAlias)
}

// roomError maps an unknown room to err404 and passes the rest through.
func roomError(err error, notFound *mxerr.Error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return notFound
	}
	return asMatrixError(err)
}

// Join joins the session's user to a room. A guest may join only when the room's
// guest_access is can_join. extra holds keys the client asked to add to its member event
// (its profile is the default; membership and kind are the server's). Joining again with
// unchanged content changes nothing.
func (s *Service) Join(ctx context.Context, sess *auth.Session, roomIDOrAlias string, extra map[string]jsontext.Value) (string, error) {
	roomID, err := s.ResolveRoom(ctx, roomIDOrAlias)
	if err != nil {
		return "", err
	}
	content := s.memberContent(ctx, sess.UserID, "join", "", sess.IsGuest)
	if len(extra) > 0 {
		var c map[string]jsontext.Value
		json.Unmarshal(content, &c)
		for k, v := range extra {
			if k != "membership" && k != "kind" {
				c[k] = v
			}
		}
		content = mustJSON(c)
	}
	_, err = s.write(ctx, roomID, func(pc *persistContext) error {
		if sess.IsGuest {
			ga, err := pc.stateContent(storage.StateKeyOf{Type: "m.room.guest_access"})
			if err != nil {
				return err
			}
			if stringField(ga, "guest_access") != "can_join" {
				return mxerr.Forbidden("Guest access not allowed")
			}
		}
		if m, err := pc.tx.Member(ctx, roomID, sess.UserID); err == nil && m.Membership == visibility.Join {
			if cur, err := pc.tx.EventByID(ctx, m.EventID); err == nil && sameJSON(clientevent.Content(&cur), content) {
				return nil
			}
		}
		_, err := pc.persist(Proto{Type: "m.room.member", StateKey: strPtr(sess.UserID), Sender: sess.UserID, Content: content})
		return err
	})
	if err != nil {
		return "", roomError(err, mxerr.NotFound("Unknown room "+roomID))
	}
	return roomID, nil
}

// MembershipChange is invite, kick, ban, unban or leave.
type MembershipChange struct {
	Action   string // invite | kick | ban | unban | leave
	Target   string
	Reason   string
	IsDirect bool
}

// ChangeMembership sends the member event for an action on a room.
func (s *Service) ChangeMembership(ctx context.Context, sess *auth.Session, roomID string, c MembershipChange) error {
	if !ValidRoomID(roomID) {
		return mxerr.InvalidParam("Invalid room ID")
	}
	var content jsontext.Value
	switch c.Action {
	case "leave":
		c.Target = sess.UserID
		content = mustJSON(withReason(map[string]any{"membership": "leave"}, c.Reason))
	case "invite":
		if err := s.checkLocalUser(ctx, c.Target); err != nil {
			return err
		}
		content = s.inviteContent(ctx, c.Target, c.IsDirect, c.Reason)
	case "kick", "unban":
		if !ValidUserID(c.Target) {
			return mxerr.InvalidParam("Invalid user ID")
		}
		content = mustJSON(withReason(map[string]any{"membership": "leave"}, c.Reason))
	case "ban":
		if !ValidUserID(c.Target) {
			return mxerr.InvalidParam("Invalid user ID")
		}
		content = mustJSON(withReason(map[string]any{"membership": "ban"}, c.Reason))
	default:
		return mxerr.InvalidParam("Unknown membership action")
	}
	_, err := s.write(ctx, roomID, func(pc *persistContext) error {
		cur, err := pc.tx.Member(ctx, roomID, c.Target)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		switch c.Action {
		case "unban":
			if cur.Membership != visibility.Ban {
				return mxerr.Forbidden("The user is not banned")
			}
		case "kick":
			if cur.Membership != visibility.Join && cur.Membership != visibility.Invite && cur.Membership != visibility.Knock {
				return mxerr.Forbidden("The user is not in the room")
			}
		case "invite":
			if cur.Membership == visibility.Join {
				return mxerr.Forbidden(c.Target + " is already in the room")
			}
			if cur.Membership == visibility.Ban {
				return mxerr.Forbidden(c.Target + " is banned from the room")
			}
		case "leave":
			if cur.Membership == "" || cur.Membership == visibility.Leave {
				return mxerr.Forbidden("You are not in this room")
			}
		}
		_, err = pc.persist(Proto{Type: "m.room.member", StateKey: strPtr(c.Target), Sender: sess.UserID, Content: content})
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		if c.Action == "leave" {
			return mxerr.Forbidden("You are not in this room")
		}
		return mxerr.Forbidden("Unknown room")
	}
	return asMatrixError(err)
}

func withReason(m map[string]any, reason string) map[string]any {
	if reason != "" {
		m["reason"] = reason
	}
	return m
}

// Forget hides a room the user has left from their sync.
func (s *Service) Forget(ctx context.Context, sess *auth.Session, roomID string) error {
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		m, err := tx.Member(ctx, roomID, sess.UserID)
		if errors.Is(err, storage.ErrNotFound) {
			return mxerr.NotFound("You have never been in this room")
		} else if err != nil {
			return err
		}
		if m.Membership == visibility.Join || m.Membership == visibility.Invite || m.Membership == visibility.Knock {
			return mxerr.Unknown("You must leave the room before forgetting it")
		}
		if err := tx.SetForgotten(ctx, roomID, sess.UserID); err != nil {
			return err
		}
		return tx.Notify(ctx, auth.CacheChannel, "forget\t"+sess.UserID+"\t"+roomID)
	})
	if err == nil {
		s.hub.Forgot(sess.UserID, roomID)
	}
	return asMatrixError(err)
}

// kickGuests makes every local guest account joined to or invited into the room leave,
// after guest access was revoked. Guests are known by their account, not by the kind in
// their member event, which a redaction strips. Each guest leaves by itself, as the
// spec's "set their membership to leave" is done in Synapse.
func (pc *persistContext) kickGuests() error {
	guests, err := pc.tx.GuestMembers(pc.ctx, pc.room.ID)
	if err != nil {
		return err
	}
	for _, g := range guests {
		if _, err := pc.persist(Proto{Type: "m.room.member", StateKey: strPtr(g), Sender: g,
			Content: mustJSON(map[string]string{"membership": "leave"})}); err != nil {
			return err
		}
	}
	return nil
}

// stateContent reads the content of one current state event ({} if absent).
func (pc *persistContext) stateContent(key storage.StateKeyOf) ([]byte, error) {
	evs, err := pc.tx.CurrentState(pc.ctx, pc.room.ID, key)
	if err != nil || len(evs) == 0 {
		return []byte("{}"), err
	}
	return clientevent.Content(&evs[0]), nil
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x, json.Deterministic(true))
	ya, _ := json.Marshal(y, json.Deterministic(true))
	return string(xa) == string(ya)
}
