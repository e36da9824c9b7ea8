package rooms

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"maunium.net/go/mautrix/federation"
)

// LoadOrCreateKey reads the server's ed25519 signing key from path, in Synapse's
// "ed25519 <version> <unpadded base64 seed>" format, creating it on first start.
func LoadOrCreateKey(path string) (*federation.SigningKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := federation.GenerateSigningKey()
		if err := os.WriteFile(path, []byte(key.SynapseString()+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing signing key: %w", err)
		}
		return key, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	key, err := federation.ParseSynapseKey(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}
