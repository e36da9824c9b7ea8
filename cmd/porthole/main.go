// Command porthole runs the Porthole Matrix homeserver.
//
//	porthole [flags]              start the server
//	porthole generate-config      print a commented configuration file with every default
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"porthole/internal/config"
	"porthole/internal/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "porthole:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "generate-config" {
		fmt.Fprint(stdout, config.Sample(config.Default()))
		return nil
	}
	fs := flag.NewFlagSet("porthole", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (see porthole generate-config)")
	listen := fs.String("listen", "", "address to listen on, host:port (default 127.0.0.1:8008)")
	serverName := fs.String("server-name", "", "server name used in user and room IDs (default localhost)")
	dataDir := fs.String("data", "", "data directory for the SQLite database and signing key (default ./porthole-data)")
	database := fs.String("database", "", "database URL: a SQLite path or postgres://... (default SQLite in the data directory)")
	registration := fs.String("registration", "", "open or closed (default open)")
	guests := fs.String("guests", "", "on or off: whether guests may register (default on)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (default info)")
	pprofAddr := fs.String("pprof", "", "loopback host:port for /debug/pprof (default off)")
	rateLimit := fs.String("rate-limit", "", "on or off: rate limiting (default on; off for test suites and benchmarks)")
	pushAllowPrivate := fs.String("push-allow-private", "", "on or off: allow pushes to loopback, private and link-local gateway addresses (default off)")
	pushTrust := fs.String("push-trust", "", "PEM file of certificates trusted for push gateway TLS besides the system roots")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown command %q (commands: generate-config)", fs.Arg(0))
	}

	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return err
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return err
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{
		{*listen, &cfg.Listen}, {*serverName, &cfg.ServerName}, {*dataDir, &cfg.DataDir}, {*database, &cfg.Database},
		{*registration, &cfg.Registration}, {*guests, &cfg.Guests}, {*logLevel, &cfg.LogLevel}, {*pprofAddr, &cfg.Pprof},
		{*rateLimit, &cfg.RateLimit}, {*pushAllowPrivate, &cfg.PushAllowPrivate}, {*pushTrust, &cfg.PushTrust},
	} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := newLogger(cfg, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
