package roomversion

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func testSigner(t *testing.T) (Signer, ed25519.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Signer{ServerName: "example.org", KeyID: "ed25519:t", Key: priv}, pub
}

func strPtr(s string) *string { return &s }

// A v1-format event is signed in its own format, names its references with their
// reference hashes, and survives Parse and Encode unchanged.
func TestV1FormatRoundTrip(t *testing.T) {
	signer, pub := testSigner(t)
	getKey := func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
		return id.SigningKey(stdBase64(pub)), time.Now().Add(time.Hour), nil
	}
	for _, version := range []id.RoomVersion{id.RoomV1, id.RoomV2} {
		create := &pdu.PDU{Type: "m.room.create", StateKey: strPtr(""), Sender: "@a:example.org", RoomID: "!r:example.org",
			Content: jsontext.Value(`{"creator":"@a:example.org","room_version":"` + string(version) + `"}`), Depth: 1,
			AuthEvents: []id.EventID{}, PrevEvents: []id.EventID{}, OriginServerTS: 1}
		createID, createRaw, err := signer.Sign(version, create, "$create:example.org", nil)
		if err != nil || createID != "$create:example.org" {
			t.Fatalf("v%s create: %s %v", version, createID, err)
		}
		if got := gjson.GetBytes(createRaw, "event_id").Str; got != string(createID) {
			t.Fatalf("v%s: event_id inside the PDU: %q", version, got)
		}
		createHash, err := ReferenceHash(version, createRaw)
		if err != nil {
			t.Fatal(err)
		}
		msg := &pdu.PDU{Type: "m.room.message", Sender: "@a:example.org", RoomID: "!r:example.org", Depth: 2,
			Content: jsontext.Value(`{"body":"hi","msgtype":"m.text"}`), OriginServerTS: 2,
			AuthEvents: []id.EventID{createID}, PrevEvents: []id.EventID{createID}}
		hashOf := func(eid id.EventID) (pdu.Hashes, error) {
			if eid == createID {
				return createHash, nil
			}
			return pdu.Hashes{}, errors.New("unknown")
		}
		msgID, raw, err := signer.Sign(version, msg, "$msg:example.org", hashOf)
		if err != nil {
			t.Fatal(err)
		}
		var v1 pdu.RoomV1PDU
		if err := json.Unmarshal(raw, &v1); err != nil {
			t.Fatalf("v%s: stored form is not the v1 format: %v\n%s", version, err, raw)
		}
		if len(v1.PrevEvents) != 1 || v1.PrevEvents[0].ID != createID || !bytes.Equal(v1.PrevEvents[0].Hashes.SHA256, createHash.SHA256) {
			t.Errorf("v%s prev_events: %s", version, raw)
		}
		if !v1.VerifyContentHash() {
			t.Errorf("v%s: content hash does not verify", version)
		}
		if err := v1.VerifySignature(version, "example.org", getKey); err != nil {
			t.Errorf("v%s: signature: %v", version, err)
		}
		parsed, err := Parse(version, raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := parsed.GetEventID(version); err != nil || got != msgID {
			t.Errorf("v%s: parsed event ID %q %v", version, got, err)
		}
		if len(parsed.PrevEvents) != 1 || parsed.PrevEvents[0] != createID {
			t.Errorf("v%s parsed prev_events %v", version, parsed.PrevEvents)
		}
		again, err := Encode(version, parsed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(canon(t, again), canon(t, raw)) {
			t.Errorf("v%s: Encode(Parse(x)) != x\n%s\n%s", version, again, raw)
		}
		// A PDU that did not come from Parse cannot be encoded without its references' hashes.
		bare := &pdu.PDU{Type: "m.room.message", PrevEvents: []id.EventID{createID}}
		bare.InternalMeta.EventID = "$bare:example.org"
		if _, err := Encode(version, bare); !errors.Is(err, ErrMissingReference) {
			t.Errorf("v%s: Encode without hashes: %v", version, err)
		}
		// Redaction keeps the v1 format and the event ID.
		red, err := Redact(version, raw)
		if err != nil {
			t.Fatal(err)
		}
		if gjson.GetBytes(red, "event_id").Str != string(msgID) || gjson.GetBytes(red, "content").Raw != "{}" ||
			!gjson.GetBytes(red, "prev_events.0.1.sha256").Exists() {
			t.Errorf("v%s redacted: %s", version, red)
		}
	}
}

// From v3 on the event ID is the reference hash, in standard base64 in v3 and URL-safe
// base64 after; the stored form has no event_id.
func TestHashedEventIDs(t *testing.T) {
	signer, _ := testSigner(t)
	for _, version := range Supported[2:] {
		ev := &pdu.PDU{Type: "m.room.message", Sender: "@a:example.org", RoomID: "!r:example.org", Depth: 2,
			Content: jsontext.Value(`{"body":"hi"}`), AuthEvents: []id.EventID{}, PrevEvents: []id.EventID{"$x"}}
		eid, raw, err := signer.Sign(version, ev, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		hash, err := ReferenceHash(version, raw)
		if err != nil {
			t.Fatal(err)
		}
		want := "$" + base64.RawURLEncoding.EncodeToString(hash.SHA256)
		if version == id.RoomV3 {
			want = "$" + stdBase64(hash.SHA256)
		}
		if string(eid) != want || gjson.GetBytes(raw, "event_id").Exists() {
			t.Errorf("v%s: event ID %s, want %s; %s", version, eid, want, raw)
		}
		parsed, err := Parse(version, raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := parsed.GetEventID(version); got != eid {
			t.Errorf("v%s: parsed event ID %s", version, got)
		}
	}
}

func TestIsSupported(t *testing.T) {
	for _, v := range []string{"1", "9", "10", "12"} {
		if !IsSupported(v) {
			t.Errorf("%s should be supported", v)
		}
	}
	for _, v := range []string{"", "0", "13", "org.matrix.msc1767.10"} {
		if IsSupported(v) {
			t.Errorf("%q should not be supported", v)
		}
	}
}

func canon(t *testing.T, raw []byte) []byte {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v, json.Deterministic(true))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func stdBase64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
