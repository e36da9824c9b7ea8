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
