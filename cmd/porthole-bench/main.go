// Command porthole-bench is Porthole's load generator. It measures any Matrix homeserver
// on a loopback address, and carries a "null" server (the trivial long-poll server that
// marks the machine's HTTP ceiling) to compare with in the same run.
//
//	porthole-bench fanout   -w 1000 -m 200 --rate 10 [--mode peek|sync] [--compare-null]
//	porthole-bench send     -s 8 -n 5000
//	porthole-bench join     -n 10000
//	porthole-bench register -n 20000 -c 64
//	porthole-bench null     --listen 127.0.0.1:8448
//
// Targets are given with --url, or started with --spawn ./porthole (a fresh data directory,
// a free port, rate limiting off). Results go to stdout as JSON and to stderr as a table.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "porthole-bench:", err)
		os.Exit(1)
	}
}

const usage = `usage: porthole-bench <fanout|send|join|register|null> [flags]; -h after a command lists its flags`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "fanout":
		return runFanout(ctx, rest, stdout, stderr)
	case "send":
		return runSend(ctx, rest, stdout, stderr)
	case "join":
		return runJoin(ctx, rest, stdout, stderr)
	case "register":
		return runRegister(ctx, rest, stdout, stderr)
	case "null":
		return runNull(ctx, rest, stderr)
	}
	return fmt.Errorf("unknown command %q; %s", cmd, usage)
}

// common holds the flags every scenario shares.
type common struct {
	url         string
	spawn       string
	spawnArgs   string
	nodes       int
	database    string
	serverPID   int
	maxDuration time.Duration
	jsonOnly    bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "base URL of the homeserver (loopback only), e.g. http://127.0.0.1:8008; several, comma-separated, for nodes of one cluster (watchers are split between them)")
	fs.StringVar(&c.spawn, "spawn", "", "start this porthole binary on a free loopback port with a fresh data directory (instead of --url)")
	fs.StringVar(&c.spawnArgs, "spawn-args", "", "extra arguments for the spawned server")
	fs.IntVar(&c.nodes, "nodes", 1, "with --spawn: how many nodes to start on one --database (PostgreSQL)")
	fs.StringVar(&c.database, "database", "", "with --spawn: postgres://... URL; a fresh schema is created in it for the run")
	fs.IntVar(&c.serverPID, "server-pid", 0, "PID of the server, for RSS and CPU figures (set automatically with --spawn)")
	fs.DurationVar(&c.maxDuration, "max-duration", 10*time.Minute, "hard limit on the whole run")
	fs.BoolVar(&c.jsonOnly, "json", false, "print only the JSON summary (no table on stderr)")
}

// target resolves the server(s) to measure, starting them if asked.
func (c *common) target(ctx context.Context, stderr io.Writer) (*targets, error) {
	if c.spawn != "" {
		return spawnNodes(ctx, c.spawn, c.spawnArgs, c.nodes, c.database, stderr)
	}
	if c.url == "" {
		return nil, errors.New("give --url or --spawn")
	}
	t := &targets{stop: func() {}}
	for _, u := range strings.Split(c.url, ",") {
		if err := checkLoopback(u); err != nil {
			return nil, err
		}
		t.urls = append(t.urls, u)
	}
	if c.serverPID > 0 {
		t.pids = []int{c.serverPID}
	}
	return t, nil
}

// targets are the node(s) of the server under test.
type targets struct {
	urls []string
	pids []int
	stop func()
}

func (t *targets) label() string { return strings.Join(t.urls, ",") }

// stats sums the nodes' resident memory and CPU time.
func (t *targets) stats() (rss int64, cpu time.Duration) {
	for _, pid := range t.pids {
		r, c, err := procStats(pid)
		if err == nil {
			rss += r
			cpu += c
		}
	}
	return rss, cpu
}

// emit prints the JSON summary on stdout.
func emit(stdout io.Writer, v any) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
