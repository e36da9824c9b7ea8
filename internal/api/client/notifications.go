package client

import (
	"net/http"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/notify"
)

// SetNotify gives the API the push service (pushers, /notifications). Call before serving.
func (a *API) SetNotify(n *notify.Service) { a.notify = n }

// getNotifications serves GET /notifications?from=&limit=&only=highlight.
func (a *API) getNotifications(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	limit, err := intParam(r, "limit", notify.DefaultNotificationsLimit, notify.MaxNotificationsLimit)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = notify.DefaultNotificationsLimit
	}
	from, _ := query(r, "from")
	only, _ := query(r, "only")
	page, err := a.notify.Notifications(r.Context(), s.UserID, s.DeviceID, from, limit, only)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, page)
}

// getPushers serves GET /pushers.
func (a *API) getPushers(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	ps, err := a.notify.Pushers(r.Context(), s.UserID)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"pushers": ps})
}

// setPusher serves POST /pushers/set.
func (a *API) setPusher(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	raw, err := a.rawObject(r)
	if err != nil {
		return err
	}
	if err := a.notify.SetPusher(r.Context(), s.UserID, s.DeviceID, raw); err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{})
}
