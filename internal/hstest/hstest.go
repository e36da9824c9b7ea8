// Package hstest runs a real Porthole server in-process over real HTTP on a fresh
// database (a temporary SQLite file, or a fresh PostgreSQL schema when
// PORTHOLE_TEST_POSTGRES is set) and gives tests a small Matrix client. Every answer the
// client receives is checked against the spec's schemas (CheckSpec), so tests send
// spec-valid event content (an m.room.message has msgtype and body); a test of arbitrary
// content uses an event type of its own.
package hstest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/tidwall/gjson"

	"porthole/internal/config"
	"porthole/internal/server"
	"porthole/internal/specschema"
	"porthole/internal/storage"
)

// Server is a running test homeserver.
type Server struct {
	URL    string
	Name   string
	Server *server.Server
	// FedURL is the federation listener's https:// address and CA the test CA its
	// certificate comes from (servers of NewFederation only).
	FedURL  string
	CA      *CA
	DataDir string
	http    *http.Client
	stop    func()
	dsn     string
	restart func(testing.TB, ...func(*config.Config)) *Server
}

// PostgresDSN is the PostgreSQL server tests use when PORTHOLE_TEST_POSTGRES is set.
func PostgresDSN() string { return os.Getenv("PORTHOLE_TEST_POSTGRES") }

// RequirePostgres skips a test that needs PostgreSQL when none is configured, except in CI
// (CI=true), where a missing PostgreSQL is a failure, not a silent skip. The suite's SQLite
// pass sets PORTHOLE_TEST_POSTGRES_LATER=1 when a PostgreSQL pass follows it.
func RequirePostgres(t testing.TB) {
	t.Helper()
	if PostgresDSN() != "" {
		return
	}
	if os.Getenv("CI") == "true" && os.Getenv("PORTHOLE_TEST_POSTGRES_LATER") == "" {
		t.Fatal("this test needs PostgreSQL, and CI must run it: set PORTHOLE_TEST_POSTGRES")
	}
	t.Skip("needs PostgreSQL: set PORTHOLE_TEST_POSTGRES")
}

// FreshDatabase returns a database URL for one test: a SQLite file in dir, or a new
// PostgreSQL schema (dropped when the test ends).
func FreshDatabase(t testing.TB, dir string) string {
	dsn := PostgresDSN()
	if dsn == "" {
		return "sqlite://" + dir + "/porthole.db"
	}
	schema := fmt.Sprintf("t_%d_%d", time.Now().UnixNano(), schemaCounter.Add(1))
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err == nil {
			db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("bad PORTHOLE_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

var schemaCounter atomic.Int64

// New starts a server. mods adjust the configuration before start.
func New(t testing.TB, mods ...func(*config.Config)) *Server {
	t.Helper()
	dir := t.TempDir()
	return start(t, dir, FreshDatabase(t, dir), mods...)
}

// NewCluster starts n servers (nodes) sharing one fresh PostgreSQL schema and one signing
// key, each with its own notifier and memory, as separate processes would be. It skips the
// test when PORTHOLE_TEST_POSTGRES is not set.
func NewCluster(t testing.TB, n int, mods ...func(*config.Config)) []*Server {
	t.Helper()
	RequirePostgres(t)
	dsn := FreshDatabase(t, "")
	first := t.TempDir()
	nodes := []*Server{start(t, first, dsn, mods...)}
	key, err := os.ReadFile(first + "/signing.key")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		dir := t.TempDir()
		if err := os.WriteFile(dir+"/signing.key", key, 0o600); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, start(t, dir, dsn, mods...))
	}
	return nodes
}

// Stop shuts a node down as a crash would look to its clients: connections close.
func (s *Server) Stop() {
	s.stop()
}

func start(t testing.TB, dir, dsn string, mods ...func(*config.Config)) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Database = dsn
	cfg.BcryptCost = 4
	cfg.LogLevel = "warn"
	cfg.RateLimit = "off"
	cfg.PushAllowPrivate = "on" // test gateways listen on loopback
	for _, m := range mods {
		m(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("PORTHOLE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("starting server: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Notifier().Shutdown()
			ts.CloseClientConnections()
			ts.Close()
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return &Server{URL: ts.URL, Name: cfg.ServerName, Server: srv, http: ts.Client(), stop: stop, dsn: dsn, DataDir: dir}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Client is a Matrix client of the test server.
type Client struct {
	S        *Server
	UserID   string
	DeviceID string
	Token    string
	txn      atomic.Int64
}

// Anon is a client without a token.
func (s *Server) Anon() *Client { return &Client{S: s} }

// Response is an HTTP answer.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON parses the body.
func (r Response) JSON() gjson.Result { return gjson.ParseBytes(r.Body) }

// Get reads a path in the body (gjson syntax).
func (r Response) Get(path string) gjson.Result { return gjson.GetBytes(r.Body, path) }

func (r Response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// Do sends a request. body may be nil, a []byte/string (sent as is) or a value (JSON).
func (c *Client) Do(t testing.TB, method, path string, body any) Response {
	t.Helper()
	return c.DoCtx(context.Background(), t, method, path, body)
}

// DoCtx is Do with a context (for long-polls a test cancels).
func (c *Client) DoCtx(ctx context.Context, t testing.TB, method, path string, body any) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encoding body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/_matrix/client/v3/" + path
	}
	req, err := http.NewRequestWithContext(ctx, method, c.S.URL+path, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(t, req)
}

// SendRequest sends a request made by the test (a raw body, headers of its own) with the
// client's token, and checks the answer against the spec like Do. A relative path is
// resolved against the server.
func (c *Client) SendRequest(t testing.TB, req *http.Request) Response {
	t.Helper()
	if req.URL.Host == "" {
		u, err := url.Parse(c.S.URL + req.URL.String())
		if err != nil {
			t.Fatalf("request URL: %v", err)
		}
		req.URL, req.Host = u, u.Host
	}
	if c.Token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return c.send(t, req)
}

func (c *Client) send(t testing.TB, req *http.Request) Response {
	t.Helper()
	ctx, method, path := req.Context(), req.Method, req.URL.Path
	resp, err := c.S.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Response{Status: 0}
		}
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil && ctx.Err() == nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	if ctx.Err() == nil {
		CheckSpec(t, method, req.URL.EscapedPath(), resp.StatusCode, raw)
	}
	return Response{Status: resp.StatusCode, Body: raw, Header: resp.Header}
}

// CheckSpec fails the test (without stopping it) for every way a response breaks the
// spec's schemas: the endpoint's response schema for that status, the error schema for
// errors, and the event schema of every event in it (internal/specschema). Every request
// through Client is checked; tests that talk raw HTTP call it themselves.
func CheckSpec(t testing.TB, method, rawPath string, status int, body []byte) {
	t.Helper()
	spec, err := specschema.Load()
	if err != nil {
		t.Fatalf("loading the spec's schemas: %v", err)
	}
	for _, v := range spec.CheckResponse(method, rawPath, status, body) {
		t.Errorf("response breaks the spec: %s\n\tbody: %s", v, clip(body, 600))
	}
}

func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// Must sends a request and fails the test unless the status is want.
func (c *Client) Must(t testing.TB, want int, method, path string, body any) Response {
	t.Helper()
	r := c.Do(t, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s: got %s, want status %d", method, path, r, want)
	}
	return r
}

// MustErr sends a request and checks the status and errcode of the error.
func (c *Client) MustErr(t testing.TB, status int, errcode, method, path string, body any) Response {
	t.Helper()
	r := c.Do(t, method, path, body)
	if r.Status != status || r.Get("errcode").String() != errcode {
		t.Fatalf("%s %s: got %s, want %d %s", method, path, r, status, errcode)
	}
	if r.Get("error").Type != gjson.String {
		t.Fatalf("%s %s: error body without an error message: %s", method, path, r)
	}
	return r
}

var userCounter atomic.Int64

// Register creates a user (UIA with m.login.dummy) and returns its client.
func (s *Server) Register(t testing.TB, localpart string) *Client {
	t.Helper()
	if localpart == "" {
		localpart = fmt.Sprintf("user%d", userCounter.Add(1))
	}
	r := s.Anon().Must(t, 200, "POST", "register", map[string]any{
		"username": localpart, "password": "pw-" + localpart, "auth": map[string]string{"type": "m.login.dummy"},
	})
	return &Client{S: s, UserID: r.Get("user_id").String(), DeviceID: r.Get("device_id").String(), Token: r.Get("access_token").String()}
}

// Guest registers a guest.
func (s *Server) Guest(t testing.TB) *Client {
	t.Helper()
	r := s.Anon().Must(t, 200, "POST", "register?kind=guest", map[string]any{})
	return &Client{S: s, UserID: r.Get("user_id").String(), DeviceID: r.Get("device_id").String(), Token: r.Get("access_token").String()}
}

// CreateRoom creates a room and returns its ID.
func (c *Client) CreateRoom(t testing.TB, body map[string]any) string {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	return c.Must(t, 200, "POST", "createRoom", body).Get("room_id").String()
}

// WorldReadableRoom creates a public room that is world-readable and open to guests.
func (c *Client) WorldReadableRoom(t testing.TB) string {
	t.Helper()
	return c.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}},
		{"type": "m.room.guest_access", "content": map[string]string{"guest_access": "can_join"}},
	}})
}

// Join joins a room.
func (c *Client) Join(t testing.TB, roomID string) {
	t.Helper()
	c.Must(t, 200, "POST", "join/"+url.PathEscape(roomID), map[string]any{})
}

// Send sends a text message and returns its event ID.
func (c *Client) Send(t testing.TB, roomID, body string) string {
	t.Helper()
	return c.SendEvent(t, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body})
}

// SendEvent sends any message event.
func (c *Client) SendEvent(t testing.TB, roomID, evType string, content any) string {
	t.Helper()
	txn := fmt.Sprintf("t%d", c.txn.Add(1))
	return c.Must(t, 200, "PUT", "rooms/"+url.PathEscape(roomID)+"/send/"+evType+"/"+txn, content).Get("event_id").String()
}

// SetState sends a state event.
func (c *Client) SetState(t testing.TB, roomID, evType, stateKey string, content any) string {
	t.Helper()
	return c.Must(t, 200, "PUT", "rooms/"+url.PathEscape(roomID)+"/state/"+evType+"/"+url.PathEscape(stateKey), content).Get("event_id").String()
}

// Room returns "rooms/<escaped id>" for building paths.
func Room(roomID string) string { return "rooms/" + url.PathEscape(roomID) }

// WaitParked blocks until at least n requests wait in a long-poll (or fails after 10 s).
func (s *Server) WaitParked(t testing.TB, n int64) {
	t.Helper()
	s.waitWaiting(t, func(w int64) bool { return w >= n })
}

// WaitUnparked blocks until no request waits in a long-poll (or fails after 10 s).
func (s *Server) WaitUnparked(t testing.TB) {
	t.Helper()
	s.waitWaiting(t, func(w int64) bool { return w == 0 })
}

func (s *Server) waitWaiting(t testing.TB, done func(int64) bool) {
	t.Helper()
	changed := make(chan struct{}, 1)
	s.Server.Notifier().ObservePark(func(int64) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer s.Server.Notifier().ObservePark(func(int64) {})
	deadline := time.After(10 * time.Second)
	for !done(s.Server.Notifier().Waiting()) {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for the parked long-poll count (have %d)", s.Server.Notifier().Waiting())
		}
	}
}

// MakeAdmin makes a user a server administrator (as porthole create-user --admin does).
func (s *Server) MakeAdmin(t testing.TB, userID string) {
	t.Helper()
	if err := s.Server.Store().Write(context.Background(), func(tx storage.Tx) error { return tx.SetAdmin(context.Background(), userID, true) }); err != nil {
		t.Fatal(err)
	}
}

// CheckAppServiceTransaction fails the test (without stopping it) for every way a
// transaction body sent to an application service breaks the spec's schemas.
func CheckAppServiceTransaction(t testing.TB, body []byte) {
	t.Helper()
	spec, err := specschema.Load()
	if err != nil {
		t.Fatalf("loading the spec's schemas: %v", err)
	}
	for _, v := range spec.CheckAppServiceTransaction(body) {
		t.Errorf("transaction breaks the spec: %s\n\tbody: %s", v, clip(body, 600))
	}
}
