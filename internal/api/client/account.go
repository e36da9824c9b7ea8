package client

import (
	"encoding/json/jsontext"
	"net/http"
	"slices"
	"strings"

	"porthole/internal/appservice"
	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/roomversion"
)

// specVersions are the Client-Server API versions Porthole implements.
var specVersions = []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"}

func (a *API) versions(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	return httpx.WriteJSON(w, 200, map[string]any{"versions": specVersions, "unstable_features": map[string]bool{}})
}

func (a *API) wellKnown(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	return httpx.WriteJSON(w, 200, map[string]any{"m.homeserver": map[string]string{"base_url": a.cfg.BaseURL}})
}

func (a *API) capabilities(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	available := map[string]string{}
	for _, v := range roomversion.Supported {
		available[string(v)] = "stable"
	}
	return httpx.WriteJSON(w, 200, map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": a.rooms.DefaultVersion(), "available": available},
		"m.change_password": map[string]bool{"enabled": true},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": false},
	}})
}

func (a *API) register(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	if err := a.limitRegistration(r); err != nil {
		return err
	}
	kind, _ := query(r, "kind")
	switch kind {
	case "", "user":
	case "guest":
		// The spec says the server ignores the body of a guest registration except the
		// device name, but it must still be a JSON object.
		var body struct {
			InitialDeviceDisplayName *string `json:"initial_device_display_name"`
		}
		raw, err := httpx.ReadBody(r, a.cfg.MaxBody)
		if err != nil {
			return err
		}
		if len(raw) > 0 {
			var obj map[string]jsontext.Value
			if err := httpx.DecodeObject(raw, &obj); err != nil {
				return err
			}
			if httpx.DecodeObject(raw, &body) != nil {
				body.InitialDeviceDisplayName = nil
			}
		}
		login, err := a.auth.RegisterGuest(r.Context(), body.InitialDeviceDisplayName)
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, login)
	default:
		return &mxerr.Error{Status: 400, Code: "M_UNRECOGNIZED", Message: "Unknown registration kind " + kind}
	}
	raw, err := httpx.ReadBody(r, a.cfg.MaxBody)
	if err != nil {
		return err
	}
	var req auth.RegisterRequest
	if err := httpx.DecodeObject(raw, &req); err != nil {
		return err
	}
	var kindOf struct {
		Type string `json:"type"`
	}
	httpx.DecodeObject(raw, &kindOf)
	if kindOf.Type == auth.AppServiceLoginType {
		as, err := a.appServiceCaller(r)
		if err != nil {
			return err
		}
		login, err := a.auth.RegisterAppServiceUser(r.Context(), as, req.Username, req.InhibitLogin, req.DeviceID, req.InitialDeviceDisplayName)
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, login)
	}
	login, err := a.auth.Register(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, login)
}

func (a *API) registerAvailable(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	name, _ := query(r, "username")
	if err := a.auth.Available(r.Context(), name); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]bool{"available": true})
}

func (a *API) loginFlows(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	return httpx.WriteJSON(w, 200, map[string]any{"flows": []map[string]string{{"type": "m.login.password"}, {"type": auth.AppServiceLoginType}}})
}

// appServiceCaller returns the application service whose as_token authenticates a
// request to a public route (registration and login as a service): 401 M_MISSING_TOKEN
// without a token, 401 M_UNKNOWN_TOKEN with any other.
func (a *API) appServiceCaller(r *http.Request) (*appservice.Registration, error) {
	if _, ok := auth.TokenFromRequest(r); !ok {
		return nil, mxerr.MissingToken()
	}
	as := a.auth.AppServiceOf(r)
	if as == nil {
		return nil, mxerr.UnknownToken("The access token is not an application service's as_token")
	}
	return as, nil
}

func (a *API) login(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	if err := a.limitRegistration(r); err != nil {
		return err
	}
	var req auth.LoginRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if req.Type == auth.AppServiceLoginType {
		as, err := a.appServiceCaller(r)
		if err != nil {
			return err
		}
		login, err := a.auth.LoginAppService(r.Context(), as, req)
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, login)
	}
	login, err := a.auth.Login(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, login)
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if err := a.auth.Logout(r.Context(), s); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if err := a.auth.LogoutAll(r.Context(), s); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	out := map[string]any{"user_id": s.UserID, "is_guest": s.IsGuest}
	if s.DeviceID != "" { // an application service acting as a user without a device has none
		out["device_id"] = s.DeviceID
	}
	return httpx.WriteJSON(w, 200, out)
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req auth.ChangePasswordRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := a.auth.ChangePassword(r.Context(), s, req); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) deactivate(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req struct {
		Auth *auth.AuthDict `json:"auth"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := a.requirePassword(r, s, req.Auth, "deactivate"); err != nil {
		return err
	}
	if err := a.auth.Deactivate(r.Context(), s.UserID); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"id_server_unbind_result": "no-support"})
}

// deviceJSON is a device as Synapse answers it: an unset display name, IP or time is null
// rather than left out, because matrix-nio requires the keys (see specschema's allowlist).
type deviceJSON struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name"`
	LastSeenIP  *string `json:"last_seen_ip"`
	LastSeenTS  *int64  `json:"last_seen_ts"`
}

func deviceJSONOf(d auth.Device) deviceJSON {
	dj := deviceJSON{DeviceID: d.ID, DisplayName: d.DisplayName}
	if d.LastSeenTS > 0 {
		dj.LastSeenTS = &d.LastSeenTS
	}
	if d.LastSeenIP != "" {
		dj.LastSeenIP = &d.LastSeenIP
	}
	return dj
}

func (a *API) devices(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	ds, err := a.auth.Devices(r.Context(), s.UserID)
	if err != nil {
		return err
	}
	out := make([]deviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceJSONOf(d))
	}
	return httpx.WriteJSON(w, 200, map[string]any{"devices": out})
}

func (a *API) device(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	d, err := a.auth.Device(r.Context(), s.UserID, r.PathValue("deviceId"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, deviceJSONOf(d))
}

func (a *API) updateDevice(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if req.DisplayName != nil && len(*req.DisplayName) > 255 {
		return mxerr.InvalidParam("display_name too long")
	}
	if err := a.auth.UpdateDevice(r.Context(), s.UserID, r.PathValue("deviceId"), req.DisplayName); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req struct {
		Auth *auth.AuthDict `json:"auth"`
	}
	if raw, err := httpx.ReadBody(r, a.cfg.MaxBody); err != nil {
		return err
	} else if len(raw) > 0 {
		if err := httpx.DecodeObject(raw, &req); err != nil {
			return err
		}
	}
	if _, err := a.auth.Device(r.Context(), s.UserID, r.PathValue("deviceId")); err != nil {
		return err
	}
	if err := a.requirePassword(r, s, req.Auth, "delete device "+r.PathValue("deviceId")); err != nil {
		return err
	}
	if err := a.auth.DeleteDevices(r.Context(), s.UserID, []string{r.PathValue("deviceId")}); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req struct {
		Devices []string       `json:"devices"`
		Auth    *auth.AuthDict `json:"auth"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if req.Devices == nil {
		return mxerr.MissingParam("Missing devices")
	}
	ids := slices.Clone(req.Devices)
	slices.Sort(ids)
	if err := a.requirePassword(r, s, req.Auth, "delete devices "+strings.Join(ids, " ")); err != nil {
		return err
	}
	if err := a.auth.DeleteDevices(r.Context(), s.UserID, req.Devices); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

// requirePassword runs user-interactive auth for a sensitive operation, except for an
// application service acting as one of its users: it manages them without their
// passwords (the spec, for deactivation and device deletion).
func (a *API) requirePassword(r *http.Request, s *auth.Session, d *auth.AuthDict, op string) error {
	if s.AppService != nil {
		return nil
	}
	return a.auth.RequirePassword(r.Context(), s, d, op)
}

// rawObject reads a request body that must be a JSON object and returns it as is.
func (a *API) rawObject(r *http.Request) (jsontext.Value, error) {
	raw, err := httpx.ReadBody(r, a.cfg.MaxBody)
	if err != nil {
		return nil, err
	}
	var v map[string]jsontext.Value
	if err := httpx.DecodeObject(raw, &v); err != nil {
		return nil, err
	}
	return jsontext.Value(raw), nil
}
