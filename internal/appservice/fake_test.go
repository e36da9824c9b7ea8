package appservice_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// fakeService is a small application service of the tests' own on loopback: it records
// the transactions it is sent and answers queries through handlers the test sets.
type fakeService struct {
	t       *testing.T
	srv     *httptest.Server
	id      string
	asToken string
	hsToken string

	mu   sync.Mutex
	txns []txn
	// status, when set, decides the answer to a transaction (200: taken).
	status func(txnID string) int
	// onUser and onAlias answer GET /users/{userId} and /rooms/{alias} (nil: 404).
	onUser, onAlias func(id string) int
	// other answers every other request (nil: 404).
	other   func(w http.ResponseWriter, r *http.Request)
	arrived chan struct{}
	// delay holds each transaction that long; inFlight and maxInFlight count them.
	delay                 time.Duration
	inFlight, maxInFlight int
}

type txn struct {
	ID   string
	Body map[string]json.RawMessage
	// Events are the transaction's events, decoded.
	Events []map[string]any
	When   time.Time
	// Status is what the service answered.
	Status int
	// The ephemeral parts, decoded.
	Ephemeral, UnstableEphemeral, ToDevice []map[string]any
}

func newFakeService(t *testing.T, id string) *fakeService {
	f := &fakeService{t: t, id: id, asToken: "as-" + id + "-secret", hsToken: "hs-" + id + "-secret", arrived: make(chan struct{}, 1000)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeService) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.hsToken {
		w.WriteHeader(403)
		io.WriteString(w, `{"errcode":"M_FORBIDDEN","error":"bad hs_token"}`)
		return
	}
	path := r.URL.EscapedPath()
	switch {
	case r.Method == "PUT" && strings.HasPrefix(path, "/_matrix/app/v1/transactions/"):
		id := strings.TrimPrefix(path, "/_matrix/app/v1/transactions/")
		raw, _ := io.ReadAll(r.Body)
		var body map[string]json.RawMessage
		if err := json.Unmarshal(raw, &body); err != nil {
			f.t.Errorf("transaction %s is not JSON: %s", id, raw)
		}
		hstest.CheckAppServiceTransaction(f.t, raw)
		var evs struct {
			Events            []map[string]any `json:"events"`
			Ephemeral         []map[string]any `json:"ephemeral"`
			UnstableEphemeral []map[string]any `json:"de.sorunome.msc2409.ephemeral"`
			ToDevice          []map[string]any `json:"de.sorunome.msc2409.to_device"`
		}
		json.Unmarshal(raw, &evs)
		f.mu.Lock()
		f.inFlight++
		f.maxInFlight = max(f.maxInFlight, f.inFlight)
		f.mu.Unlock()
		time.Sleep(f.delay)
		f.mu.Lock()
		f.inFlight--
		status := 200
		if f.status != nil {
			status = f.status(id)
		}
		f.txns = append(f.txns, txn{ID: id, Body: body, Events: evs.Events, When: time.Now(), Status: status,
			Ephemeral: evs.Ephemeral, UnstableEphemeral: evs.UnstableEphemeral, ToDevice: evs.ToDevice})
		f.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, "{}")
		f.arrived <- struct{}{}
	case r.Method == "GET" && strings.HasPrefix(path, "/_matrix/app/v1/users/"):
		f.answer(w, f.onUser, strings.TrimPrefix(r.URL.Path, "/_matrix/app/v1/users/"))
	case r.Method == "GET" && strings.HasPrefix(path, "/_matrix/app/v1/rooms/"):
		f.answer(w, f.onAlias, strings.TrimPrefix(r.URL.Path, "/_matrix/app/v1/rooms/"))
	default:
		if f.other != nil {
			f.other(w, r)
			return
		}
		w.WriteHeader(404)
		io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"not here"}`)
	}
}

func (f *fakeService) answer(w http.ResponseWriter, h func(string) int, id string) {
	status := 404
	if h != nil {
		status = h(id)
	}
	w.WriteHeader(status)
	if status == 200 {
		io.WriteString(w, "{}")
	} else {
		io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"unknown"}`)
	}
}

// registration writes the service's registration file with the given namespaces YAML
// and returns its path.
func (f *fakeService) registration(t *testing.T, namespaces string, extra ...string) string {
	body := fmt.Sprintf("id: %s\nurl: %s\nas_token: %s\nhs_token: %s\nsender_localpart: %s_bot\nrate_limited: false\n%snamespaces:\n%s\n",
		f.id, f.srv.URL, f.asToken, f.hsToken, f.id, strings.Join(extra, ""), namespaces)
	p := filepath.Join(t.TempDir(), f.id+".yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withServices configures registration files.
func withServices(files ...string) func(*config.Config) {
	return func(c *config.Config) { c.AppServiceConfigFiles = append(c.AppServiceConfigFiles, files...) }
}

// client is the service's client of the homeserver (its as_token), acting as its sender
// or, with asUser, as one of its users.
func (f *fakeService) client(s *hstest.Server) *hstest.Client {
	c := s.Anon()
	c.Token = f.asToken
	return c
}

// transactions returns a copy of what arrived so far.
func (f *fakeService) transactions() []txn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]txn(nil), f.txns...)
}

// waitEvent waits until an event matching pick has arrived in a taken transaction and
// returns it with its transaction.
func (f *fakeService) waitEvent(t *testing.T, what string, pick func(ev map[string]any) bool) (map[string]any, txn) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		for _, tx := range f.transactions() {
			if tx.Status != 200 {
				continue
			}
			for _, ev := range tx.Events {
				if pick(ev) {
					return ev, tx
				}
			}
		}
		select {
		case <-f.arrived:
		case <-deadline:
			t.Fatalf("%s: timed out waiting for %s; got %d transactions", f.id, what, len(f.transactions()))
		}
	}
}

// eventIDs lists the IDs of every event pushed so far.
func (f *fakeService) eventIDs() map[string]int {
	out := map[string]int{}
	for _, tx := range f.transactions() {
		for _, ev := range tx.Events {
			if id, ok := ev["event_id"].(string); ok {
				out[id]++
			}
		}
	}
	return out
}

func byID(id string) func(map[string]any) bool {
	return func(ev map[string]any) bool { return ev["event_id"] == id }
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitEphemeral waits for an ephemeral event (field: "ephemeral", "unstable" or
// "to_device") matching pick.
func (f *fakeService) waitEphemeral(t *testing.T, field, what string, pick func(ev map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		for _, tx := range f.transactions() {
			list := map[string][]map[string]any{"ephemeral": tx.Ephemeral, "unstable": tx.UnstableEphemeral, "to_device": tx.ToDevice}[field]
			for _, ev := range list {
				if pick(ev) {
					return ev
				}
			}
		}
		select {
		case <-f.arrived:
		case <-deadline:
			t.Fatalf("%s: timed out waiting for %s", f.id, what)
		}
	}
}

// ephemeralCount counts what arrived in a field, by type.
func (f *fakeService) ephemeralCount(field string) map[string]int {
	out := map[string]int{}
	for _, tx := range f.transactions() {
		list := map[string][]map[string]any{"ephemeral": tx.Ephemeral, "unstable": tx.UnstableEphemeral, "to_device": tx.ToDevice}[field]
		for _, ev := range list {
			out[ev["type"].(string)]++
		}
	}
	return out
}
