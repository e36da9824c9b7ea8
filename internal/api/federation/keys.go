package federation

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"porthole/internal/httpx"
	"porthole/internal/mxerr"
)

// Bounds of a notary query.
const (
	maxQueryServers = 100
	maxQueryKeys    = 100
)

func (a *API) wellKnown(w http.ResponseWriter, r *http.Request, _ *Request) error {
	if a.cfg.WellKnownServer == "" {
		return mxerr.NotFound(".well-known is not configured")
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]string{"m.server": a.cfg.WellKnownServer})
}

func (a *API) version(w http.ResponseWriter, r *http.Request, _ *Request) error {
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"server": map[string]string{"name": "Porthole", "version": a.cfg.Version}})
}

func (a *API) serverKeys(w http.ResponseWriter, r *http.Request, _ *Request) error {
	raw, err := a.keys.OwnKeys()
	if err != nil {
		return mxerr.Internal(err)
	}
	httpx.WriteBytes(w, http.StatusOK, raw)
	return nil
}

// queryKeysGET is GET /_matrix/key/v2/query/{serverName}[/{keyId}].
func (a *API) queryKeysGET(w http.ResponseWriter, r *http.Request, _ *Request) error {
	minValid := time.Now()
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return mxerr.InvalidParam("minimum_valid_until_ts must be an integer")
		}
		minValid = time.UnixMilli(ms)
	}
	var keyIDs []id.KeyID
	if k := r.PathValue("keyId"); k != "" {
		keyIDs = []id.KeyID{id.KeyID(k)}
	}
	found, err := a.keys.Query(r.Context(), r.PathValue("serverName"), keyIDs, minValid)
	if err != nil {
		return mxerr.Internal(err)
	}
	return writeKeys(w, found)
}

// queryKeysPOST is POST /_matrix/key/v2/query: several servers, each with the keys wanted
// (none: all) and until when they must be valid (absent: now).
func (a *API) queryKeysPOST(w http.ResponseWriter, r *http.Request, req *Request) error {
	var body struct {
		ServerKeys map[string]map[id.KeyID]struct {
			MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
		} `json:"server_keys"`
	}
	if err := httpx.DecodeObject(req.Body, &body); err != nil {
		return err
	}
	if len(body.ServerKeys) > maxQueryServers {
		return mxerr.InvalidParam("Too many servers in one query (at most " + strconv.Itoa(maxQueryServers) + ")")
	}
	var out []json.RawMessage
	for server, criteria := range body.ServerKeys {
		if len(criteria) > maxQueryKeys {
			return mxerr.InvalidParam("Too many keys of one server in one query (at most " + strconv.Itoa(maxQueryKeys) + ")")
		}
		var keyIDs []id.KeyID
		var minValid time.Time
		for kid, c := range criteria {
			keyIDs = append(keyIDs, kid)
			t := time.Now()
			if c.MinimumValidUntilTS != nil {
				t = time.UnixMilli(*c.MinimumValidUntilTS)
			}
			if t.After(minValid) {
				minValid = t
			}
		}
		if len(criteria) == 0 {
			minValid = time.Now()
		}
		found, err := a.keys.Query(r.Context(), server, keyIDs, minValid)
		if err != nil {
			return mxerr.Internal(err)
		}
		out = append(out, found...)
	}
	return writeKeys(w, out)
}

func writeKeys(w http.ResponseWriter, found []json.RawMessage) error {
	if found == nil {
		found = []json.RawMessage{}
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"server_keys": found})
}

// queryProfile is GET /_matrix/federation/v1/query/profile: a local user's profile, or
// one field of it.
func (a *API) queryProfile(w http.ResponseWriter, r *http.Request, _ *Request) error {
	q := r.URL.Query()
	userID := id.UserID(q.Get("user_id"))
	if _, hs, err := userID.ParseAndValidateRelaxed(); err != nil {
		return mxerr.InvalidParam("user_id is not a valid user ID")
	} else if hs != a.cfg.ServerName {
		return mxerr.InvalidParam("The user is not hosted on this server")
	}
	p, err := a.rooms.GetProfile(r.Context(), string(userID))
	if err != nil {
		return err
	}
	out := map[string]string{}
	field := q.Get("field")
	if p.DisplayName != nil && (field == "" || field == "displayname") {
		out["displayname"] = *p.DisplayName
	}
	if p.AvatarURL != nil && (field == "" || field == "avatar_url") {
		out["avatar_url"] = *p.AvatarURL
	}
	if field != "" && field != "displayname" && field != "avatar_url" {
		return mxerr.InvalidParam("field must be displayname or avatar_url")
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}
