package client

import (
	"net/http"

	"porthole/internal/appservice"
	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
)

// SetAppServices gives the handlers the application services (ping, third-party
// lookups). Call it before serving.
func (a *API) SetAppServices(s *appservice.Service) { a.appsvc = s }

// pingAppService serves POST /v1/appservice/{appserviceId}/ping: only the service itself,
// by its as_token, may ask for its own ping.
func (a *API) pingAppService(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		TxnID string `json:"transaction_id"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if s.AppService == nil || s.AppService.ID != r.PathValue("appserviceId") {
		return mxerr.Forbidden("Provided access token is not the appservice's as_token")
	}
	took, err := a.appsvc.Ping(r.Context(), s.AppService, body.TxnID)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]int64{"duration_ms": took.Milliseconds()})
}

// setAppServiceListed serves PUT (visibility public or private) and DELETE of
// /directory/list/appservice/{networkId}/{roomId}.
func (a *API) setAppServiceListed(put bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
		listed := false
		if put {
			var body struct {
				Visibility *string `json:"visibility"`
			}
			if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
				return err
			}
			switch {
			case body.Visibility == nil:
				return mxerr.MissingParam("Missing visibility")
			case *body.Visibility == "public":
				listed = true
			case *body.Visibility != "private":
				return mxerr.InvalidParam("visibility must be public or private")
			}
		}
		if err := a.rooms.SetAppServiceListed(r.Context(), s, r.PathValue("networkId"), r.PathValue("roomId"), listed); err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, struct{}{})
	}
}
