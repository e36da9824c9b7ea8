package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type spawned struct {
	url  string
	pid  int
	stop func()
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

// spawnServer starts a Porthole binary on a free loopback port with a fresh data
// directory and waits until it answers.
func spawnServer(ctx context.Context, bin, extra string, log io.Writer) (*spawned, error) {
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
	args := []string{"--listen", addr, "--data", filepath.Join(dir, "data"), "--log-level", "warn", "--rate-limit", "off"}
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
	url := "http://" + addr
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
		resp, err := http.Get(url + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			fmt.Fprintf(log, "spawned %s on %s (pid %d, data %s)\n", bin, url, cmd.Process.Pid, dir)
			return &spawned{url: url, pid: cmd.Process.Pid, stop: stop}, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("%s did not start on %s (see its log)", bin, addr)
}
