package hstest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"
)

// KeyPair is an ed25519 key a test signs device keys, one-time keys or cross-signing keys
// with, as a client would.
type KeyPair struct {
	Pub  string
	priv ed25519.PrivateKey
}

// NewKeyPair makes a random key.
func NewKeyPair() KeyPair {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return KeyPair{Pub: base64.RawStdEncoding.EncodeToString(pub), priv: priv}
}

// Sign adds the signature of userID's key "ed25519:<keyName>" to obj (the Matrix signing
// of JSON: canonical form without signatures and unsigned).
func (k KeyPair) Sign(t testing.TB, obj map[string]any, userID, keyName string) map[string]any {
	t.Helper()
	sigs, _ := obj["signatures"].(map[string]any)
	unsigned, hasUnsigned := obj["unsigned"]
	delete(obj, "signatures")
	delete(obj, "unsigned")
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	v := jsontext.Value(raw)
	if err := canonicaljson.Canonicalize(&v); err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.priv, v))
	if sigs == nil {
		sigs = map[string]any{}
	}
	mine, _ := sigs[userID].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
	}
	mine["ed25519:"+keyName] = sig
	sigs[userID] = mine
	obj["signatures"] = sigs
	if hasUnsigned {
		obj["unsigned"] = unsigned
	}
	return obj
}

// DeviceKeys returns the client's device keys signed by key (its ed25519 identity key).
func (c *Client) DeviceKeys(t testing.TB, key KeyPair) map[string]any {
	t.Helper()
	return key.Sign(t, map[string]any{
		"user_id": c.UserID, "device_id": c.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"ed25519:" + c.DeviceID:    key.Pub,
			"curve25519:" + c.DeviceID: NewKeyPair().Pub,
		},
	}, c.UserID, c.DeviceID)
}

// OneTimeKeys returns n signed_curve25519 keys signed by key, with IDs prefix1..prefixN.
func (c *Client) OneTimeKeys(t testing.TB, key KeyPair, prefix string, n int) map[string]any {
	t.Helper()
	out := map[string]any{}
	for i := 1; i <= n; i++ {
		out[fmt.Sprintf("signed_curve25519:%s%d", prefix, i)] = key.Sign(t, map[string]any{"key": NewKeyPair().Pub}, c.UserID, c.DeviceID)
	}
	return out
}

// FallbackKey returns a signed fallback key with the given ID.
func (c *Client) FallbackKey(t testing.TB, key KeyPair, id string) map[string]any {
	t.Helper()
	return map[string]any{"signed_curve25519:" + id: key.Sign(t, map[string]any{"key": NewKeyPair().Pub, "fallback": true}, c.UserID, c.DeviceID)}
}

// UploadKeys uploads the client's device keys, n one-time keys and a fallback key, and
// returns its identity key.
func (c *Client) UploadKeys(t testing.TB, n int) KeyPair {
	t.Helper()
	key := NewKeyPair()
	c.Must(t, 200, "POST", "keys/upload", map[string]any{
		"device_keys":   c.DeviceKeys(t, key),
		"one_time_keys": c.OneTimeKeys(t, key, "k", n),
		"fallback_keys": c.FallbackKey(t, key, "fb"),
	})
	return key
}

// CrossSigningKey returns a cross-signing key object of the given usage for pub.
func CrossSigningKey(userID, usage, pub string) map[string]any {
	return map[string]any{"user_id": userID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}}
}

// Login logs the user in again with password and returns the new device's client.
func (s *Server) Login(t testing.TB, userID, password string) *Client {
	t.Helper()
	r := s.Anon().Must(t, 200, "POST", "login", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": userID}, "password": password,
	})
	return &Client{S: s, UserID: r.Get("user_id").String(), DeviceID: r.Get("device_id").String(), Token: r.Get("access_token").String()}
}
