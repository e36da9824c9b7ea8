package client

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"net/http"
	"time"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/rooms"
)

func (a *API) typing(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if r.PathValue("userId") != s.UserID {
		return mxerr.Forbidden("Cannot set typing for other users")
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.Typing == nil {
		return mxerr.MissingParam("Missing typing")
	}
	timeout := 30 * time.Second
	if body.Timeout != nil {
		timeout = time.Duration(max(*body.Timeout, 0)) * time.Millisecond
	}
	if err := a.eph.SetTyping(r.Context(), r.PathValue("roomId"), s.UserID, *body.Typing, timeout); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) receipt(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		ThreadID jsontext.Value `json:"thread_id"`
	}
	if err := a.optionalJSON(r, &body); err != nil {
		return err
	}
	roomID, eventID, rtype := r.PathValue("roomId"), r.PathValue("eventId"), r.PathValue("receiptType")
	// As Synapse: a thread_id given must be a non-empty string, and not on m.fully_read;
	// the service then checks that the event is in that thread.
	threadID := ""
	if body.ThreadID != nil {
		if err := json.Unmarshal(body.ThreadID, &threadID); err != nil || threadID == "" {
			return mxerr.InvalidParam("thread_id field must be a non-empty string")
		}
		if rtype == "m.fully_read" {
			return mxerr.InvalidParam("thread_id is not compatible with m.fully_read receipts")
		}
	}
	var err error
	if rtype == "m.fully_read" {
		err = a.eph.SetFullyRead(r.Context(), roomID, s.UserID, eventID)
	} else {
		err = a.eph.PutReceipt(r.Context(), roomID, s.UserID, rtype, eventID, threadID)
	}
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) readMarkers(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	roomID := r.PathValue("roomId")
	if body.FullyRead != "" {
		if err := a.eph.SetFullyRead(r.Context(), roomID, s.UserID, body.FullyRead); err != nil {
			return err
		}
	}
	if body.Read != "" {
		if err := a.eph.PutReceipt(r.Context(), roomID, s.UserID, "m.read", body.Read, ""); err != nil {
			return err
		}
	}
	if body.ReadPrivate != "" {
		if err := a.eph.PutReceipt(r.Context(), roomID, s.UserID, "m.read.private", body.ReadPrivate, ""); err != nil {
			return err
		}
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) getPresence(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	userID := r.PathValue("userId")
	if !rooms.ValidUserID(userID) {
		return mxerr.InvalidParam("Invalid user ID")
	}
	p, err := a.eph.GetPresence(r.Context(), s.UserID, userID)
	if err != nil {
		return err
	}
	out := map[string]any{"presence": p.State}
	if p.LastActiveTS > 0 {
		out["last_active_ago"] = max(time.Now().UnixMilli()-p.LastActiveTS, 0)
	}
	if p.StatusMsg != nil {
		out["status_msg"] = *p.StatusMsg
	}
	if p.State == "online" {
		out["currently_active"] = p.CurrentlyActive
	}
	return httpx.WriteJSON(w, 200, out)
}

func (a *API) putPresence(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if r.PathValue("userId") != s.UserID {
		return mxerr.Forbidden("Cannot set presence for other users")
	}
	var body struct {
		Presence  string  `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.Presence == "" {
		return mxerr.MissingParam("Missing presence")
	}
	if err := a.eph.SetPresence(r.Context(), s.UserID, body.Presence, body.StatusMsg, false); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	p, err := a.rooms.GetProfile(r.Context(), r.PathValue("userId"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, p)
}

func (a *API) getProfileField(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	field := r.PathValue("field")
	p, err := a.rooms.GetProfile(r.Context(), r.PathValue("userId"))
	if err != nil {
		return err
	}
	var v *string
	switch field {
	case "displayname":
		v = p.DisplayName
	case "avatar_url":
		v = p.AvatarURL
	default:
		return mxerr.NotFound("Unknown profile field")
	}
	// Synapse answers an unset field with null rather than 404.
	return httpx.WriteJSON(w, 200, map[string]*string{field: v})
}

func (a *API) putProfileField(field string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
		if r.PathValue("userId") != s.UserID {
			return mxerr.Forbidden("Cannot change the profile of other users")
		}
		var body map[string]jsontext.Value
		if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
			return err
		}
		raw, ok := body[field]
		if !ok {
			return mxerr.MissingParam("Missing " + field)
		}
		var v *string
		if raw.Kind() != 'n' {
			var str string
			if err := httpx.DecodeValue(raw, &str); err != nil {
				return mxerr.BadJSON(field + " must be a string")
			}
			v = &str
		}
		if err := a.rooms.SetProfileField(r.Context(), s, field, v); err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, struct{}{})
	}
}

func (a *API) deleteProfileField(field string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
		if r.PathValue("userId") != s.UserID {
			return mxerr.Forbidden("Cannot change the profile of other users")
		}
		if err := a.rooms.SetProfileField(r.Context(), s, field, nil); err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, struct{}{})
	}
}

// accountDataTarget checks the user in the path and returns the room ("" for global).
func (a *API) accountDataTarget(r *http.Request, s *auth.Session) (string, error) {
	if r.PathValue("userId") != s.UserID {
		return "", mxerr.Forbidden("Cannot access account data of other users")
	}
	roomID := r.PathValue("roomId")
	if roomID != "" && !rooms.ValidRoomID(roomID) {
		return "", mxerr.InvalidParam("Invalid room ID")
	}
	return roomID, nil
}

func (a *API) getAccountData(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID, err := a.accountDataTarget(r, s)
	if err != nil {
		return err
	}
	content, err := a.eph.AccountData(r.Context(), s.UserID, roomID, r.PathValue("type"))
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, content)
	return nil
}

func (a *API) putAccountData(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID, err := a.accountDataTarget(r, s)
	if err != nil {
		return err
	}
	content, err := a.rawObject(r)
	if err != nil {
		return err
	}
	if err := a.eph.PutAccountData(r.Context(), s.UserID, roomID, r.PathValue("type"), content); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) getTags(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID, err := a.accountDataTarget(r, s)
	if err != nil {
		return err
	}
	tags, err := a.eph.Tags(r.Context(), s.UserID, roomID)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"tags": tags})
}

func (a *API) putTag(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID, err := a.accountDataTarget(r, s)
	if err != nil {
		return err
	}
	content, err := a.rawObject(r)
	if err != nil {
		return err
	}
	if err := a.eph.SetTag(r.Context(), s.UserID, roomID, r.PathValue("tag"), content); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) deleteTag(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID, err := a.accountDataTarget(r, s)
	if err != nil {
		return err
	}
	if err := a.eph.SetTag(r.Context(), s.UserID, roomID, r.PathValue("tag"), nil); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}
