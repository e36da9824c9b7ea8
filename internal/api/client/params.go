package client

import (
	"net/http"
	"strconv"
	"time"

	"porthole/internal/mxerr"
	"porthole/internal/stream"
)

// query returns the first value of a query parameter and whether it was given. The query
// string is parsed once per request (into r.Form, which nothing else uses: bodies are JSON).
func query(r *http.Request, name string) (string, bool) {
	if r.Form == nil {
		r.Form = r.URL.Query()
	}
	vs, ok := r.Form[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// intParam parses a non-negative integer parameter; absent gives def; anything else is
// 400 M_INVALID_PARAM. Values above max are clamped.
func intParam(r *http.Request, name string, def, maxVal int) (int, error) {
	raw, ok := query(r, name)
	if !ok || raw == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		return 0, mxerr.InvalidParam("Query parameter " + strconv.Quote(name) + " must be a non-negative integer")
	}
	return int(min(n, int64(maxVal))), nil
}

// timeoutParam parses a timeout in milliseconds. Non-integers, and an empty value, are
// 400 M_UNKNOWN (as Synapse answers); a negative value comes back negative, for the
// endpoint to decide what it means.
func timeoutParam(r *http.Request, def time.Duration) (time.Duration, error) {
	raw, ok := query(r, "timeout")
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, mxerr.Unknown("timeout must be in milliseconds.")
	}
	if n < 0 {
		return -time.Millisecond, nil
	}
	if n > int64(24*time.Hour/time.Millisecond) {
		n = int64(24 * time.Hour / time.Millisecond)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// syncTimeoutParam parses /sync's timeout as Synapse does: absent is 0; anything but a
// non-negative integer (a negative one included) is 400 M_INVALID_PARAM.
func syncTimeoutParam(r *http.Request) (time.Duration, error) {
	raw, ok := query(r, "timeout")
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, mxerr.InvalidParam("Query parameter timeout must be an integer")
	}
	if n < 0 {
		return 0, mxerr.InvalidParam("Query parameter timeout must be a positive integer.")
	}
	return time.Duration(min(n, int64(24*time.Hour/time.Millisecond))) * time.Millisecond, nil
}

// tokenParam parses a stream token parameter; absent, empty or "END" give nil.
func tokenParam(r *http.Request, name string) (*stream.Pos, error) {
	raw, ok := query(r, name)
	if !ok || raw == "" || raw == "END" {
		return nil, nil
	}
	p, err := stream.ParseToken(raw)
	if err != nil {
		return nil, mxerr.Unknown("'" + name + "' parameter is invalid")
	}
	return &p, nil
}

// boolParam parses "true"/"false".
func boolParam(r *http.Request, name string) (bool, error) {
	raw, ok := query(r, name)
	if !ok || raw == "" {
		return false, nil
	}
	switch raw {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, mxerr.InvalidParam("Query parameter " + strconv.Quote(name) + " must be true or false")
}
