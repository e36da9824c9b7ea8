package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	mfed "maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"porthole/internal/mxerr"
)

// VerifyRequest checks the X-Matrix signature of a request from another server (spec:
// request authentication) and returns the origin. The header must name a valid origin,
// the destination (when named) must be this server, and a key of the origin valid now
// must have signed method, URI, origin, destination and the body (already read, JSON).
// A header that cannot be parsed is 400 M_UNAUTHORIZED, anything else 401.
func (k *KeyRing) VerifyRequest(ctx context.Context, r *http.Request, body []byte) (string, error) {
	var header string
	for _, h := range r.Header.Values("Authorization") {
		if strings.HasPrefix(h, "X-Matrix ") {
			header = h
			break
		}
	}
	if header == "" {
		return "", mxerr.Unauthorized("Missing X-Matrix Authorization header")
	}
	auth := mfed.ParseXMatrixAuth(header)
	if _, _, ok := mfed.ParseServerName(auth.Origin); !ok || auth.KeyID == "" || auth.Signature == "" {
		return "", mxerr.MalformedAuth("Malformed X-Matrix Authorization header")
	}
	if auth.Destination != "" && auth.Destination != k.name {
		return "", mxerr.Unauthorized("Destination mismatch in X-Matrix Authorization header")
	}
	now := k.now()
	key, err := k.Key(ctx, auth.Origin, auth.KeyID, now)
	if err != nil || key.ValidUntilTS < now.UnixMilli() {
		if err == nil {
			err = errors.New("the key has expired")
		}
		return "", mxerr.Unauthorized("No valid key " + string(auth.KeyID) + " of " + auth.Origin).With(err)
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	signed := map[string]any{"method": r.Method, "uri": uri, "origin": auth.Origin, "destination": k.name,
		"signatures": map[string]map[string]string{auth.Origin: {string(auth.KeyID): auth.Signature}}}
	if len(body) > 0 {
		signed["content"] = json.RawMessage(body)
	}
	if err := signutil.VerifyJSON(auth.Origin, auth.KeyID, id.SigningKey(key.Key), signed); err != nil {
		return "", mxerr.Unauthorized("Invalid X-Matrix signature").With(err)
	}
	return auth.Origin, nil
}
