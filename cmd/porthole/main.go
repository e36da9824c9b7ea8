// Command porthole runs the Porthole Matrix homeserver.
//
//	porthole [flags]              start the server
//	porthole generate-config      print a commented configuration file with every default
//	porthole create-user [flags] LOCALPART
//	                              create an account (--admin: a server administrator) in the
//	                              database, whether the server is running or not
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
	"strings"
	"syscall"

	"porthole/internal/config"
	"porthole/internal/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "porthole:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "generate-config" {
		fmt.Fprint(stdout, config.Sample(config.Default()))
		return nil
	}
	if len(args) > 0 && args[0] == "create-user" {
		return createUser(args[1:], stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("porthole", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath, serverName, dataDir, database := configFlags(fs)
	listen := fs.String("listen", "", "address to listen on, host:port (default 127.0.0.1:8008)")
	registration := fs.String("registration", "", "open or closed (default open)")
	guests := fs.String("guests", "", "on or off: whether guests may register (default on)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (default info)")
	pprofAddr := fs.String("pprof", "", "loopback host:port for /debug/pprof (default off)")
	rateLimit := fs.String("rate-limit", "", "on or off: rate limiting (default on; off for test suites and benchmarks)")
	pushAllowPrivate := fs.String("push-allow-private", "", "on or off: allow pushes to loopback, private and link-local gateway addresses (default off)")
	pushTrust := fs.String("push-trust", "", "PEM file of certificates trusted for push gateway TLS besides the system roots")
	fedListen := fs.String("federation-listen", "", "address of the federation listener, host:port (default off: no federation)")
	fedCert := fs.String("federation-tls-cert", "", "PEM certificate for the federation listener (without it: plain HTTP behind a TLS proxy)")
	fedKey := fs.String("federation-tls-key", "", "PEM private key for the federation listener")
	fedTrust := fs.String("federation-trust", "", "PEM file of certificates trusted for outgoing federation TLS besides the system roots")
	fedAllowPrivate := fs.String("federation-allow-private", "", "on or off: allow federation requests to loopback, private and link-local addresses (default off)")
	var appservices []string
	fs.Func("appservice", "application service registration file (YAML); repeat for several", func(v string) error {
		appservices = append(appservices, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown command %q (commands: generate-config, create-user)", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath, func(c *config.Config) []flagValue {
		c.AppServiceConfigFiles = append(c.AppServiceConfigFiles, appservices...)
		return []flagValue{
			{*listen, &c.Listen}, {*serverName, &c.ServerName}, {*dataDir, &c.DataDir}, {*database, &c.Database},
			{*registration, &c.Registration}, {*guests, &c.Guests}, {*logLevel, &c.LogLevel}, {*pprofAddr, &c.Pprof},
			{*rateLimit, &c.RateLimit}, {*pushAllowPrivate, &c.PushAllowPrivate}, {*pushTrust, &c.PushTrust},
			{*fedListen, &c.Federation.Listen}, {*fedCert, &c.Federation.TLSCert}, {*fedKey, &c.Federation.TLSKey},
			{*fedTrust, &c.Federation.Trust}, {*fedAllowPrivate, &c.Federation.AllowPrivateAddresses},
		}
	})
	if err != nil {
		return err
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
	// Either listener failing stops the server.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fedDone := make(chan error, 1)
	if cfg.Federation.Enabled() {
		fln, err := net.Listen("tcp", cfg.Federation.Listen)
		if err != nil {
			return fmt.Errorf("federation listener: %w", err)
		}
		go func() {
			err := srv.ServeFederation(ctx, fln)
			if err != nil {
				cancel(err)
			}
			fedDone <- err
		}()
	} else {
		fedDone <- nil
	}
	if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if err := <-fedDone; err != nil {
		return fmt.Errorf("federation listener: %w", err)
	}
	log.Info("stopped")
	return nil
}

// configFlags declares the flags that say where the server's data is, which create-user
// shares with the server.
func configFlags(fs *flag.FlagSet) (configPath, serverName, dataDir, database *string) {
	configPath = fs.String("config", "", "YAML configuration file (see porthole generate-config)")
	serverName = fs.String("server-name", "", "server name used in user and room IDs (default localhost)")
	dataDir = fs.String("data", "", "data directory for the SQLite database and signing key (default ./porthole-data)")
	database = fs.String("database", "", "database URL: a SQLite path or postgres://... (default SQLite in the data directory)")
	return
}

// flagValue is a flag's value and the setting it overrides when given.
type flagValue struct {
	flag string
	dst  *string
}

// loadConfig reads the file (or the defaults), then the environment, then the flags that
// were given, and validates the result.
func loadConfig(path string, flags func(*config.Config) []flagValue) (config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return cfg, err
	}
	for _, o := range flags(&cfg) {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// createUser is porthole create-user: it opens the server's database (SQLite allows it while
// the server runs) and makes the account there.
func createUser(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("porthole create-user", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: porthole create-user [flags] LOCALPART\n\nCreates the account @LOCALPART:<server name>. With --admin on an existing account, makes it a server admin.")
		fs.PrintDefaults()
	}
	configPath, serverName, dataDir, database := configFlags(fs)
	admin := fs.Bool("admin", false, "make the account a server administrator")
	password := fs.String("password", "", "the account's password (visible to other local users in the process list: prefer --password-file)")
	passwordFile := fs.String("password-file", "", "read the password from this file's first line (- for standard input)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("create-user needs one LOCALPART")
	}
	cfg, err := loadConfig(*configPath, func(c *config.Config) []flagValue {
		return []flagValue{{*serverName, &c.ServerName}, {*dataDir, &c.DataDir}, {*database, &c.Database}}
	})
	if err != nil {
		return err
	}
	pw := *password
	if *passwordFile != "" {
		var raw []byte
		if *passwordFile == "-" {
			raw, err = io.ReadAll(io.LimitReader(stdin, 4096))
		} else {
			raw, err = os.ReadFile(*passwordFile)
		}
		if err != nil {
			return err
		}
		pw, _, _ = strings.Cut(string(raw), "\n")
		pw = strings.TrimSuffix(pw, "\r")
	}
	userID, created, err := server.CreateUser(context.Background(), cfg, fs.Arg(0), pw, *admin)
	if err != nil {
		return err
	}
	switch {
	case created && *admin:
		fmt.Fprintf(stdout, "created %s (server admin)\n", userID)
	case created:
		fmt.Fprintf(stdout, "created %s\n", userID)
	default:
		fmt.Fprintf(stdout, "%s is now a server admin\n", userID)
	}
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
