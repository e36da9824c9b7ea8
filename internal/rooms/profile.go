package rooms

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// Profile is a user's public profile.
type Profile struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// GetProfile returns a local user's profile.
func (s *Service) GetProfile(ctx context.Context, userID string) (Profile, error) {
	if !ValidUserID(userID) {
		return Profile{}, mxerr.InvalidParam("Invalid user ID")
	}
	u, err := s.userOrAsk(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && u.Deactivated) {
		return Profile{}, mxerr.NotFound("Profile not found")
	} else if err != nil {
		return Profile{}, asMatrixError(err)
	}
	return Profile{DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}, nil
}

// SetProfileField sets (or, with nil, removes) displayname or avatar_url, and updates the
// user's member event in every room they are joined to.
func (s *Service) SetProfileField(ctx context.Context, sess *auth.Session, field string, value *string) error {
	if value != nil && len(*value) > 1024 {
		return mxerr.BadJSON(field + " too long")
	}
	u, err := s.store.User(ctx, sess.UserID)
	if err != nil {
		return mxerr.Internal(err)
	}
	switch field {
	case "displayname":
		u.DisplayName = value
	case "avatar_url":
		u.AvatarURL = value
	default:
		return mxerr.Unrecognized("Unknown profile field")
	}
	if err := s.store.Write(ctx, func(tx storage.Tx) error { return tx.SetProfile(ctx, sess.UserID, u.DisplayName, u.AvatarURL) }); err != nil {
		return mxerr.Internal(err)
	}
	rooms, err := s.store.MembershipsOf(ctx, sess.UserID)
	if err != nil {
		return mxerr.Internal(err)
	}
	for _, m := range rooms {
		if m.Membership != visibility.Join {
			continue
		}
		_, err := s.write(ctx, m.RoomID, func(pc *persistContext) error {
			cur, err := pc.tx.EventByID(ctx, m.EventID)
			if err != nil {
				return err
			}
			var c map[string]jsontext.Value
			if err := json.Unmarshal(clientevent.Content(&cur), &c); err != nil {
				return err
			}
			delete(c, "displayname")
			delete(c, "avatar_url")
			delete(c, "reason")
			if u.DisplayName != nil {
				c["displayname"] = mustJSON(*u.DisplayName)
			}
			if u.AvatarURL != nil {
				c["avatar_url"] = mustJSON(*u.AvatarURL)
			}
			_, err = pc.persist(Proto{Type: "m.room.member", StateKey: strPtr(sess.UserID), Sender: sess.UserID, Content: mustJSON(c)})
			return err
		})
		if err != nil {
			s.log.Warn("updating member event after profile change", "room", m.RoomID, "user", sess.UserID, "err", err)
		}
	}
	return nil
}
