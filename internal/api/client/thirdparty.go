package client

import (
	"net/http"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
)

// Third-party networks are offered by application services (bridges) that list
// protocols in their registrations: the requests are passed to them and their answers
// merged (internal/appservice). Without such services no protocol is known and lookups
// find nothing, as Synapse answers without bridges.

func (a *API) thirdPartyProtocols(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	return httpx.WriteJSON(w, 200, a.appsvc.Protocols(r.Context(), ""))
}

func (a *API) thirdPartyProtocol(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	p := r.PathValue("protocol")
	info, ok := a.appsvc.Protocols(r.Context(), p)[p]
	if !ok {
		return mxerr.NotFound("Unknown protocol")
	}
	return httpx.WriteJSON(w, 200, info)
}

// thirdPartyLookup answers /thirdparty/location and /thirdparty/user, with a protocol or
// (the reverse lookups, by alias or user ID) without: the query's fields go to the
// services as they came, less the access token.
func (a *API) thirdPartyLookup(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
		fields := r.URL.Query()
		fields.Del("access_token")
		results, err := a.appsvc.Lookup(r.Context(), kind, r.PathValue("protocol"), fields)
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, results)
	}
}

// Third-party identifiers (e-mail addresses, phone numbers): Porthole neither verifies
// them nor talks to identity servers, and says so in the m.3pid_changes capability. The
// endpoints answer as Synapse does with 3PID changes disabled.

func (a *API) getThreepids(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	return httpx.WriteJSON(w, 200, map[string]any{"threepids": []struct{}{}})
}

// threepidChange answers the endpoints that would add or remove an identifier
// (POST /account/3pid, /add, /delete, /email/requestToken).
func (a *API) threepidChange(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	var body map[string]any
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	return mxerr.ThreepidChangesDisabled()
}

func (a *API) threepidMsisdnToken(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	var body map[string]any
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	return mxerr.ThreepidMediumNotSupported("Adding phone numbers to user account is not supported by this homeserver")
}

// threepidBind would ask an identity server to bind an identifier; Porthole trusts no
// identity server, so the request is checked and refused with M_SERVER_NOT_TRUSTED.
func (a *API) threepidBind(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	var body struct {
		ClientSecret  *string `json:"client_secret"`
		IDServer      *string `json:"id_server"`
		IDAccessToken *string `json:"id_access_token"`
		SID           *string `json:"sid"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	for name, v := range map[string]*string{"client_secret": body.ClientSecret, "id_server": body.IDServer, "id_access_token": body.IDAccessToken, "sid": body.SID} {
		if v == nil {
			return mxerr.MissingParam("Missing param " + name)
		}
	}
	if err := checkIDServer(*body.IDServer); err != nil {
		return err
	}
	return mxerr.ServerNotTrusted("This homeserver does not bind third-party identifiers through identity servers")
}

// threepidUnbind removes nothing: no identifier was ever bound through this server, so
// there is no identity server to unbind from ("no-support", as the spec says).
func (a *API) threepidUnbind(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	var body struct {
		Medium   *string `json:"medium"`
		Address  *string `json:"address"`
		IDServer *string `json:"id_server"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.Address == nil {
		return mxerr.MissingParam("Missing param address")
	}
	if body.Medium == nil {
		return mxerr.MissingParam("Missing param medium")
	}
	if *body.Medium != "email" && *body.Medium != "msisdn" {
		return mxerr.InvalidParam("medium must be email or msisdn")
	}
	if body.IDServer != nil {
		if err := checkIDServer(*body.IDServer); err != nil {
			return err
		}
	}
	return httpx.WriteJSON(w, 200, map[string]string{"id_server_unbind_result": "no-support"})
}

// checkIDServer applies Synapse's rule for an identity server's location: a host name
// with an optional port and path.
func checkIDServer(s string) error {
	host, _, _ := strings.Cut(s, "/")
	if host == "" || strings.ContainsAny(host, "@?#\\ ") || strings.Contains(s, "..") {
		return mxerr.Unknown("id_server must be a valid hostname with optional port and path components")
	}
	return nil
}
