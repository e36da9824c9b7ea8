package rooms_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"net/url"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
	"porthole/internal/rooms"
	"porthole/internal/roomversion"
)

// Events received over federation in a room of the original event format (v1, v2) are
// stored as they came, take part in the auth rules by the IDs their senders chose, and
// local events name them with their reference hashes.
func TestRemoteEventsV1Format(t *testing.T) {
	for _, version := range []id.RoomVersion{id.RoomV1, id.RoomV2} {
		t.Run("v"+string(version), func(t *testing.T) {
			s := hstest.New(t)
			alice := s.Register(t, "")
			room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": string(version)})
			rs := newRemote(t, s)
			signer := roomversion.Signer{ServerName: rs.name, KeyID: rs.key.ID, Key: rs.key.Priv}
			store := s.Server.Store()
			hashOf := func(eid id.EventID) (pdu.Hashes, error) {
				ev, err := store.EventByID(context.Background(), string(eid))
				if err != nil {
					return pdu.Hashes{}, err
				}
				return roomversion.ReferenceHash(version, ev.PDU)
			}
			bob := "@bob:" + rs.name
			// send builds, signs and delivers one of bob's events in the v1 format, parsed
			// as the federation layer would parse it.
			send := func(name string, prev id.EventID, evType string, stateKey *string, content any, redacts *id.EventID) (id.EventID, []byte) {
				t.Helper()
				head := lastEvent(t, alice, room)
				raw, _ := json.Marshal(content)
				p := &pdu.PDU{Type: evType, StateKey: stateKey, Sender: id.UserID(bob), Content: jsontext.Value(raw), RoomID: id.RoomID(room),
					OriginServerTS: time.Now().UnixMilli(), Depth: head.depth + 1, PrevEvents: []id.EventID{prev}, AuthEvents: []id.EventID{}, Redacts: redacts}
				state := roomState(t, alice, room)
				for _, k := range p.AuthEventSelection(version) {
					if eid, ok := state[[2]string{k.Type, k.StateKey}]; ok {
						p.AuthEvents = append(p.AuthEvents, eid)
					}
				}
				eid := id.EventID("$" + name + ":" + rs.name)
				_, wire, err := signer.Sign(version, p, eid, hashOf)
				if err != nil {
					t.Fatal(err)
				}
				parsed, err := roomversion.Parse(version, wire)
				if err != nil {
					t.Fatal(err)
				}
				out, err := s.Server.Rooms().PersistRemote(context.Background(), room, rooms.RemoteEvent{PDU: parsed, EventID: eid})
				if err != nil || out != rooms.Accepted {
					t.Fatalf("%s: %s %v", eid, out, err)
				}
				return eid, wire
			}
			joinID, joinWire := send("join", lastEvent(t, alice, room).id, "m.room.member", sk(bob), map[string]string{"membership": "join"}, nil)
			msgID, _ := send("msg", joinID, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "from afar"}, nil)
			if stored, err := store.EventByID(context.Background(), string(joinID)); err != nil || !bytes.Equal(canonical(t, stored.PDU), canonical(t, joinWire)) {
				t.Fatalf("the stored remote event differs from what arrived:\n%s\n%s", stored.PDU, joinWire)
			}
			// A local reply names the remote message with its reference hash.
			reply := alice.Send(t, room, "welcome")
			stored, err := store.EventByID(context.Background(), reply)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := hashOf(msgID)
			prev := gjson.GetBytes(stored.PDU, "prev_events.0")
			if prev.Get("0").String() != string(msgID) || prev.Get("1.sha256").String() != base64.RawStdEncoding.EncodeToString(want.SHA256) {
				t.Fatalf("local reply's prev_events: %s", stored.PDU)
			}
			// A remote redaction (redacts at the top level in these versions) is applied.
			send("red", id.EventID(reply), "m.room.redaction", nil, map[string]string{}, &msgID)
			got := alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(msgID)), nil)
			if got.Get("content").Raw != "{}" || got.Get("unsigned.redacted_because.event_id").String() != "$red:"+rs.name {
				t.Fatalf("remote redaction not applied: %s", got)
			}
			pruned, _ := store.EventByID(context.Background(), string(msgID))
			if gjson.GetBytes(pruned.PDU, "event_id").String() != string(msgID) || !gjson.GetBytes(pruned.PDU, "prev_events.0.1.sha256").Exists() {
				t.Fatalf("pruned event lost its format: %s", pruned.PDU)
			}
		})
	}
}

func canonical(t *testing.T, raw []byte) []byte {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v, json.Deterministic(true))
	return out
}
