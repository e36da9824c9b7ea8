package clientevent

import (
	"encoding/json"
	"testing"

	"porthole/internal/storage"
)

func sampleEvent() *storage.Event {
	sk := ""
	return &storage.Event{
		Pos: 42, ID: "$abc", RoomID: "!r:hs", Type: "m.room.topic", StateKey: &sk, Sender: "@a:hs", OriginTS: 1000,
		PDU:      []byte(`{"auth_events":[],"content":{"topic":"hello \"world\""},"depth":3,"origin_server_ts":1000,"prev_events":["$p"],"room_id":"!r:hs","sender":"@a:hs","state_key":"","type":"m.room.topic"}`),
		Unsigned: []byte(`{"prev_content":{"topic":"old"},"replaces_state":"$old"}`),
		TxnID:    "t1", TxnDevice: "DEV", Visibility: "shared",
	}
}

func TestEncodeAndAppend(t *testing.T) {
	e := Encode(sampleEvent())
	raw := e.JSON(1500, "join", Reader{UserID: "@a:hs", DeviceID: "DEV"})
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", raw, err)
	}
	u := got["unsigned"].(map[string]any)
	if got["user_id"] != "@a:hs" || got["state_key"] != "" || got["content"].(map[string]any)["topic"] != `hello "world"` ||
		u["age"].(float64) != 500 || u["membership"] != "join" || u["transaction_id"] != "t1" || u["replaces_state"] != "$old" {
		t.Fatalf("client event: %s", raw)
	}
	// Another reader gets no transaction ID; a missing membership is left out.
	other := e.JSON(1000, "", Reader{UserID: "@b:hs"})
	json.Unmarshal(other, &got)
	u = got["unsigned"].(map[string]any)
	if _, ok := u["transaction_id"]; ok {
		t.Fatal("transaction_id leaked to another user")
	}
	if _, ok := u["membership"]; ok {
		t.Fatal("empty membership should be omitted")
	}
	// Redacted events carry redacted_because.
	r := sampleEvent()
	r.Unsigned = nil
	r.RedactedBecause = []byte(`{"event_id":"$red","type":"m.room.redaction"}`)
	json.Unmarshal(Encode(r).JSON(1000, "join", Reader{}), &got)
	if got["unsigned"].(map[string]any)["redacted_because"].(map[string]any)["event_id"] != "$red" {
		t.Fatalf("redacted_because: %v", got)
	}
	if s := string(Stripped(sampleEvent())); s != `{"content":{"topic":"hello \"world\""},"sender":"@a:hs","state_key":"","type":"m.room.topic"}` {
		t.Fatalf("stripped: %s", s)
	}
}

// BenchmarkEncode is the once-per-event cost of putting an event in a room window.
func BenchmarkEncode(b *testing.B) {
	ev := sampleEvent()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Encode(ev)
	}
}

// BenchmarkAppend is the per-reader cost: copying the encoded event and its unsigned tail.
func BenchmarkAppend(b *testing.B) {
	e := Encode(sampleEvent())
	buf := make([]byte, 0, 1024)
	r := Reader{UserID: "@b:hs"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = e.Append(buf[:0], 2000, "leave", r)
	}
}
