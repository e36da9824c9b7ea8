package rooms

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"maunium.net/go/mautrix/id"
)

func encodeKey(pub ed25519.PublicKey) string { return base64.RawStdEncoding.EncodeToString(pub) }

// LoadOrCreateKey reads the server's ed25519 signing key from path, in Synapse's
// "ed25519 <version> <unpadded base64 seed>" format, creating it on first start.
func LoadOrCreateKey(path string) (SigningKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return SigningKey{}, err
		}
		version := "a_" + base64.RawURLEncoding.EncodeToString(seed[:3])
		line := fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(seed))
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			return SigningKey{}, fmt.Errorf("writing signing key: %w", err)
		}
		data = []byte(line)
	} else if err != nil {
		return SigningKey{}, fmt.Errorf("reading signing key: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 3 || fields[0] != "ed25519" {
		return SigningKey{}, fmt.Errorf("signing key %s: expected \"ed25519 <version> <base64 seed>\"", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
	if err != nil || len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("signing key %s: bad seed", path)
	}
	return SigningKey{ID: id.KeyID("ed25519:" + fields[1]), Priv: ed25519.NewKeyFromSeed(seed)}, nil
}
