package client

import (
	"net/http"
	"time"

	"porthole/internal/auth"
	"porthole/internal/httpx"
)

// whois answers GET /admin/whois/{userId}: for the user themself or a server admin.
func (a *API) whois(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	who, err := a.auth.Whois(r.Context(), s, r.PathValue("userId"))
	if err != nil {
		return err
	}
	type session struct {
		Connections []auth.Connection `json:"connections"`
	}
	type device struct {
		Sessions []session `json:"sessions"`
	}
	devices := make(map[string]device, len(who.Devices))
	for id, conns := range who.Devices {
		devices[id] = device{Sessions: []session{{Connections: conns}}}
	}
	return httpx.WriteJSON(w, 200, map[string]any{"user_id": who.UserID, "devices": devices})
}

func (a *API) openIDToken(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body map[string]any
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	tok, err := a.auth.RequestOpenIDToken(r.Context(), s, r.PathValue("userId"), time.Now())
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, tok)
}
