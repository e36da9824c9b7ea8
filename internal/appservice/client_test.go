package appservice

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestCallFailures: every answer but a 2xx with a JSON body is a failure that says why;
// redirects are not followed; a service that does not answer times out.
func TestCallFailures(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hs" {
			w.WriteHeader(403)
			return
		}
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "{}")
		case "/500":
			w.WriteHeader(500)
			io.WriteString(w, `{"errcode":"M_UNKNOWN"}`)
		case "/html":
			io.WriteString(w, "<html>hello</html>")
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	client, err := newHTTPClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{http: client, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	reg := &Registration{ID: "x", URL: srv.URL, HSToken: "hs"}
	cases := []struct {
		path    string
		status  int
		timeout bool
	}{
		{"/ok", 0, false},
		{"/500", 500, false},
		{"/html", 200, false},
		{"/redirect", 302, false},
		{"/hang", 0, true},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := s.call(ctx, reg, "GET", c.path, nil, nil, nil)
		cancel()
		if c.path == "/ok" {
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
			}
			continue
		}
		var ce *callError
		if !errors.As(err, &ce) || ce.Status != c.status || ce.Timeout != c.timeout {
			t.Errorf("%s: %#v, want status %d timeout %v", c.path, err, c.status, c.timeout)
		}
	}
	bad := &Registration{ID: "x", URL: srv.URL, HSToken: "wrong"}
	var ce *callError
	if err := s.call(context.Background(), bad, "GET", "/ok", nil, nil, nil); !errors.As(err, &ce) || ce.Status != 403 {
		t.Errorf("with a wrong hs_token: %v", err)
	}
	closed := &Registration{ID: "x", URL: "http://127.0.0.1:1", HSToken: "hs"}
	if err := s.call(context.Background(), closed, "GET", "/ok", nil, nil, nil); !errors.As(err, &ce) || ce.Status != 0 || ce.Timeout {
		t.Errorf("nothing listening: %v", err)
	}
}
