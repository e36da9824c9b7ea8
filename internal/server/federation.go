package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	mfed "maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"porthole/internal/config"
	"porthole/internal/federation"
	"porthole/internal/storage"
)

// newFederation builds the outgoing client and the key ring from the configuration.
func newFederation(ctx context.Context, cfg config.Config, store storage.Store, key *mfed.SigningKey, log *slog.Logger) (*federation.Client, *federation.KeyRing, error) {
	f := cfg.Federation
	var trust []byte
	if f.Trust != "" {
		var err error
		if trust, err = os.ReadFile(f.Trust); err != nil {
			return nil, nil, fmt.Errorf("federation.trust: %w", err)
		}
	}
	client, err := federation.NewClient(federation.ClientConfig{ServerName: cfg.ServerName, Key: key,
		AllowPrivate: f.AllowPrivateAddresses == "on", TrustPEM: trust}, log)
	if err != nil {
		return nil, nil, err
	}
	var notaries []federation.Notary
	for _, ks := range f.TrustedKeyServers {
		n := federation.Notary{ServerName: ks.ServerName, Keys: map[id.KeyID]id.SigningKey{}}
		for kid, k := range ks.VerifyKeys {
			n.Keys[id.KeyID(kid)] = id.SigningKey(k)
		}
		notaries = append(notaries, n)
	}
	keys, err := federation.NewKeyRing(ctx, store, client, cfg.ServerName, key, notaries, log)
	if err != nil {
		return nil, nil, err
	}
	return client, keys, nil
}

// version is the module version the binary was built from (or its VCS revision).
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return info.Main.Version + "+" + s.Value[:12]
		}
	}
	return info.Main.Version
}
