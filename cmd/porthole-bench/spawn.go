package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

type spawned struct {
	url     string
	pid     int
	stop    func()
	keyFile string
}

// spawnNull starts this program's null server as a child process.
func spawnNull(ctx context.Context, log io.Writer) (*spawned, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(self, "null", "--listen", addr)
	cmd.Stderr = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sp := &spawned{url: "http://" + addr, pid: cmd.Process.Pid, stop: func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}}
	for i := 0; i < 200 && ctx.Err() == nil; i++ {
		if resp, err := http.Get(sp.url + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			fmt.Fprintf(log, "null server on %s (pid %d)\n", sp.url, sp.pid)
			return sp, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	sp.stop()
	return nil, fmt.Errorf("the null server did not start")
}

// spawnNodes starts n Porthole nodes; with a PostgreSQL database they share a fresh schema
// and the first node's signing key.
func spawnNodes(ctx context.Context, bin, extra string, n int, database string, log io.Writer) (*targets, error) {
	if n < 1 {
		n = 1
	}
	if n > 1 && !strings.HasPrefix(database, "postgres") {
		return nil, fmt.Errorf("--nodes %d needs a --database postgres://... that the nodes share", n)
	}
	t := &targets{}
	var stops []func()
	if database != "" {
		dsn, drop, err := freshSchema(database)
		if err != nil {
			return nil, err
		}
		database = dsn
		stops = append(stops, drop)
	}
	t.stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	var key string
	for i := 0; i < n; i++ {
		sp, err := spawnServer(ctx, bin, extra, database, key, log)
		if err != nil {
			t.stop()
			return nil, err
		}
		stops = append(stops, sp.stop)
		t.urls = append(t.urls, sp.url)
		t.pids = append(t.pids, sp.pid)
		key = sp.keyFile
	}
	return t, nil
}

// freshSchema creates a new schema in a PostgreSQL database for one run and returns a URL
// that uses it.
func freshSchema(database string) (string, func(), error) {
	u, err := url.Parse(database)
	if err != nil {
		return "", nil, err
	}
	if err := checkLoopback("http://" + u.Host); err != nil {
		return "", nil, err
	}
	db, err := sql.Open("pgx", database)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		return "", nil, fmt.Errorf("creating schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	drop := func() {
		if db, err := sql.Open("pgx", database); err == nil {
			db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	}
	return u.String(), drop, nil
}

// spawnServer starts a Porthole binary on a free loopback port with a fresh data
// directory and waits until it answers. database and keyFile (a signing key to copy in)
// may be empty.
func spawnServer(ctx context.Context, bin, extra, database, keyFile string, log io.Writer) (*spawned, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "porthole-bench-")
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if keyFile != "" {
		os.MkdirAll(dataDir, 0o700)
		if key, err := os.ReadFile(keyFile); err == nil {
			os.WriteFile(filepath.Join(dataDir, "signing.key"), key, 0o600)
		}
	}
	args := []string{"--listen", addr, "--data", dataDir, "--log-level", "warn", "--rate-limit", "off"}
	if database != "" {
		args = append(args, "--database", database)
	}
	args = append(args, strings.Fields(extra)...)
	cmd := exec.Command(bin, args...)
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	base := "http://" + addr
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			fmt.Fprintf(log, "spawned %s on %s (pid %d, data %s)\n", bin, base, cmd.Process.Pid, dir)
			return &spawned{url: base, pid: cmd.Process.Pid, stop: stop, keyFile: filepath.Join(dataDir, "signing.key")}, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("%s did not start on %s (see its log)", bin, addr)
}
