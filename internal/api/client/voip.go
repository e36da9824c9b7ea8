package client

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
)

// Turn is the TURN configuration handed to VoIP clients (Synapse's turn_* settings).
type Turn struct {
	URIs         []string
	SharedSecret string
	Username     string
	Password     string
	UserLifetime time.Duration
	AllowGuests  bool
}

// TurnCredentials are the TURN servers and the credentials a user may use with them,
// or nil when none are configured. With a shared secret they follow the TURN REST API
// scheme (coturn's use-auth-secret): the username is "<expiry, unix seconds>:<user ID>"
// and the password base64(HMAC-SHA1(secret, username)), which the TURN server checks
// without asking the homeserver.
func (t Turn) TurnCredentials(userID string, now time.Time) map[string]any {
	if len(t.URIs) == 0 || t.UserLifetime <= 0 {
		return nil
	}
	var username, password string
	switch {
	case t.SharedSecret != "":
		username = strconv.FormatInt(now.Add(t.UserLifetime).Unix(), 10) + ":" + userID
		mac := hmac.New(sha1.New, []byte(t.SharedSecret))
		mac.Write([]byte(username))
		password = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	case t.Username != "" && t.Password != "":
		username, password = t.Username, t.Password
	default:
		return nil
	}
	return map[string]any{"username": username, "password": password, "ttl": int64(t.UserLifetime / time.Second), "uris": t.URIs}
}

func (a *API) turnServer(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if s.IsGuest && !a.cfg.Turn.AllowGuests {
		return mxerr.GuestAccessForbidden()
	}
	creds := a.cfg.Turn.TurnCredentials(s.UserID, time.Now())
	if creds == nil {
		return httpx.WriteJSON(w, 200, struct{}{})
	}
	return httpx.WriteJSON(w, 200, creds)
}
