package e2ee

import (
	"bytes"
	"encoding/base64"
	stdjson "encoding/json"
	"encoding/json/jsontext"
	"encoding/json/v2"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/crypto/signatures"
	"maunium.net/go/mautrix/id"

	"porthole/internal/storage"
)

// Signed JSON (device keys, key objects, cross-signing keys) is kept as the client sent
// it, less "unsigned"; these helpers read and extend it without re-encoding what was
// signed. Canonical JSON and ed25519 verification are mautrix's.

// members decodes a JSON object into its raw members.
func members(raw []byte) (map[string]jsontext.Value, bool) {
	var m map[string]jsontext.Value
	if jsontext.Value(raw).Kind() != '{' || json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	return m, true
}

// encodeMembers encodes raw members back into an object.
func encodeMembers(m map[string]jsontext.Value) []byte {
	out, err := json.Marshal(m, json.Deterministic(true))
	if err != nil {
		panic(err) // members came from valid JSON
	}
	return out
}

// withoutUnsigned drops the "unsigned" member: servers add it, it is not the client's.
func withoutUnsigned(raw []byte) []byte {
	m, ok := members(raw)
	if !ok {
		return raw
	}
	if _, has := m["unsigned"]; !has {
		return raw
	}
	delete(m, "unsigned")
	return encodeMembers(m)
}

// signedContent is the canonical form of what a signature covers: the object less its
// signatures and unsigned members.
func signedContent(raw []byte) ([]byte, bool) {
	m, ok := members(raw)
	if !ok {
		return nil, false
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	v := jsontext.Value(encodeMembers(m))
	if canonicaljson.Canonicalize(&v) != nil {
		return nil, false
	}
	return v, true
}

// sameContent reports that two signed objects are the same key (signatures aside).
func sameContent(a, b []byte) bool {
	ca, ok1 := signedContent(a)
	cb, ok2 := signedContent(b)
	return ok1 && ok2 && bytes.Equal(ca, cb)
}

// verifySigned checks the signature of userID's key keyName ("ed25519:<keyName>") on raw
// with the unpadded-base64 ed25519 public key pub.
func verifySigned(raw []byte, userID, keyName, pub string) bool {
	ok, err := signatures.VerifySignatureJSON(stdjson.RawMessage(raw), id.UserID(userID), keyName, id.Ed25519(pub))
	return err == nil && ok
}

// validEd25519 reports whether pub is an unpadded base64 ed25519 public key.
func validEd25519(pub string) bool {
	b, err := base64.RawStdEncoding.DecodeString(pub)
	return err == nil && len(b) == 32
}

// signatureMap reads the signatures member of a signed object (nil when absent or not a
// map of maps of strings).
func signatureMap(raw []byte) map[string]map[string]string {
	m, ok := members(raw)
	if !ok {
		return nil
	}
	var sigs map[string]map[string]string
	if v, has := m["signatures"]; !has || json.Unmarshal(v, &sigs) != nil {
		return nil
	}
	return sigs
}

// withSignatures returns raw with the uploaded signatures added to its own.
func withSignatures(raw []byte, extra []storage.KeySignature) []byte {
	if len(extra) == 0 {
		return raw
	}
	m, ok := members(raw)
	if !ok {
		return raw
	}
	sigs := signatureMap(raw)
	if sigs == nil {
		sigs = map[string]map[string]string{}
	}
	for _, s := range extra {
		if sigs[s.SignerUserID] == nil {
			sigs[s.SignerUserID] = map[string]string{}
		}
		sigs[s.SignerUserID][s.SignerKeyID] = s.Signature
	}
	enc, err := json.Marshal(sigs, json.Deterministic(true))
	if err != nil {
		return raw
	}
	m["signatures"] = enc
	return encodeMembers(m)
}
