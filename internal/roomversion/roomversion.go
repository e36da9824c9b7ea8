// Package roomversion holds what Porthole needs to know about room versions beyond what
// mautrix's id.RoomVersion helpers already say: which versions it supports, and the event
// format of versions 1 and 2, which mautrix models as a separate type (pdu.RoomV1PDU).
//
// Rooms of versions 1 and 2 use the original event format: the sending server chooses the
// event ID ("$opaque:server") and puts it inside the PDU, and prev_events and auth_events
// are [event ID, {"sha256": reference hash}] pairs. From version 3 on the event ID is the
// event's reference hash and the references are bare IDs. The rest of Porthole works on
// the version 3+ shape (pdu.PDU, which mautrix's auth rules and state resolution take);
// Parse and Encode convert at the storage edge, so stored PDUs are always in their room
// version's own format (what federation sends and receives).
package roomversion

import (
	"crypto/ed25519"
	"encoding/json/v2"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// Supported are the room versions Porthole creates and joins, oldest first.
var Supported = []id.RoomVersion{
	id.RoomV1, id.RoomV2, id.RoomV3, id.RoomV4, id.RoomV5, id.RoomV6,
	id.RoomV7, id.RoomV8, id.RoomV9, id.RoomV10, id.RoomV11, id.RoomV12,
}

// IsSupported reports whether v is a version Porthole can create and hold.
func IsSupported(v string) bool {
	for _, s := range Supported {
		if string(s) == v {
			return true
		}
	}
	return false
}

// V1Format reports whether a room version uses the original (room v1 and v2) event format.
func V1Format(v id.RoomVersion) bool { return v.EventIDFormat() == id.EventIDFormatCustom }

func init() {
	// A v1-format event's ID is not derived from the event: mautrix (event auth, state
	// resolution) reads it from InternalMeta.EventID when this is set, which Parse fills.
	pdu.UseInternalMetaForGetEventID = true
}

// refsKey is where Parse keeps the hashes of a v1-format event's references, in
// InternalMeta.Extra (mautrix's place for a server's own data about a PDU), for Encode.
const refsKey = "porthole.v1_reference_hashes"

// Parse decodes a PDU stored or received in its room version's format into the v3+ shape.
// A v1-format event gets its ID in InternalMeta.EventID.
func Parse(version id.RoomVersion, raw []byte) (*pdu.PDU, error) {
	if !V1Format(version) {
		var p pdu.PDU
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, err
		}
		return &p, nil
	}
	var v1 pdu.RoomV1PDU
	if err := json.Unmarshal(raw, &v1); err != nil {
		return nil, err
	}
	return fromV1(&v1), nil
}

func fromV1(v1 *pdu.RoomV1PDU) *pdu.PDU {
	refs := make(map[id.EventID]pdu.Hashes, len(v1.AuthEvents)+len(v1.PrevEvents))
	ids := func(list []pdu.V1EventReference) []id.EventID {
		out := make([]id.EventID, len(list))
		for i, r := range list {
			out[i] = r.ID
			refs[r.ID] = r.Hashes
		}
		return out
	}
	p := &pdu.PDU{
		AuthEvents: ids(v1.AuthEvents), Content: v1.Content, Depth: v1.Depth, Hashes: v1.Hashes,
		OriginServerTS: v1.OriginServerTS, PrevEvents: ids(v1.PrevEvents), Redacts: v1.Redacts,
		RoomID: v1.RoomID, Sender: v1.Sender, Signatures: v1.Signatures, StateKey: v1.StateKey,
		Sticky: v1.Sticky, Type: v1.Type, Unsigned: v1.Unsigned, Unknown: v1.Unknown,
		DeprecatedPrevState: v1.DeprecatedPrevState, DeprecatedOrigin: v1.DeprecatedOrigin,
		DeprecatedMembership: v1.DeprecatedMembership,
	}
	p.InternalMeta.EventID = v1.EventID
	p.InternalMeta.Extra = map[string]any{refsKey: refs}
	return p
}

// ErrMissingReference is returned by Encode for a v1-format event whose references'
// hashes are unknown (a PDU that did not come from Parse or Sign).
var ErrMissingReference = errors.New("reference hash unknown")

// Encode encodes a PDU in its room version's format: the reverse of Parse.
func Encode(version id.RoomVersion, p *pdu.PDU) ([]byte, error) {
	if !V1Format(version) {
		return json.Marshal(p)
	}
	refs, _ := p.InternalMeta.Extra[refsKey].(map[id.EventID]pdu.Hashes)
	v1, err := toV1(p, p.InternalMeta.EventID, func(eid id.EventID) (pdu.Hashes, error) {
		h, ok := refs[eid]
		if !ok {
			return pdu.Hashes{}, fmt.Errorf("%w: %s", ErrMissingReference, eid)
		}
		return h, nil
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(v1)
}

func toV1(p *pdu.PDU, eventID id.EventID, hashOf func(id.EventID) (pdu.Hashes, error)) (*pdu.RoomV1PDU, error) {
	if eventID == "" {
		return nil, errors.New("v1-format event without an event ID")
	}
	refs := func(list []id.EventID) ([]pdu.V1EventReference, error) {
		out := make([]pdu.V1EventReference, len(list))
		for i, eid := range list {
			h, err := hashOf(eid)
			if err != nil {
				return nil, err
			}
			out[i] = pdu.V1EventReference{ID: eid, Hashes: h}
		}
		return out, nil
	}
	auth, err := refs(p.AuthEvents)
	if err != nil {
		return nil, err
	}
	prev, err := refs(p.PrevEvents)
	if err != nil {
		return nil, err
	}
	return &pdu.RoomV1PDU{
		AuthEvents: auth, Content: p.Content, Depth: p.Depth, EventID: eventID, Hashes: p.Hashes,
		OriginServerTS: p.OriginServerTS, PrevEvents: prev, Redacts: p.Redacts, RoomID: p.RoomID,
		Sender: p.Sender, Signatures: p.Signatures, StateKey: p.StateKey, Sticky: p.Sticky,
		Type: p.Type, Unsigned: p.Unsigned, Unknown: p.Unknown,
		DeprecatedPrevState: p.DeprecatedPrevState, DeprecatedOrigin: p.DeprecatedOrigin,
		DeprecatedMembership: p.DeprecatedMembership,
	}, nil
}

// ReferenceHash is the reference hash of a stored or received PDU (what v1-format
// references carry), computed on its own format.
func ReferenceHash(version id.RoomVersion, raw []byte) (pdu.Hashes, error) {
	var sum [32]byte
	var err error
	if V1Format(version) {
		var v1 pdu.RoomV1PDU
		if err = json.Unmarshal(raw, &v1); err != nil {
			return pdu.Hashes{}, err
		}
		sum, err = v1.GetReferenceHash(version)
	} else {
		var p pdu.PDU
		if err = json.Unmarshal(raw, &p); err != nil {
			return pdu.Hashes{}, err
		}
		sum, err = p.GetReferenceHash(version)
	}
	if err != nil {
		return pdu.Hashes{}, err
	}
	return pdu.Hashes{SHA256: sum[:]}, nil
}

// Signer signs events as one server.
type Signer struct {
	ServerName string
	KeyID      id.KeyID
	Key        ed25519.PrivateKey
}

// Sign adds the content hash and the server's signature to a new event and returns its
// event ID and its encoded form. v1-format events need the ID the server chose for them
// (newID) and their references' reference hashes (hashOf); later versions ignore both.
// p's hashes, signatures and InternalMeta.EventID are filled in.
func (s Signer) Sign(version id.RoomVersion, p *pdu.PDU, newID id.EventID, hashOf func(id.EventID) (pdu.Hashes, error)) (id.EventID, []byte, error) {
	if !V1Format(version) {
		if err := p.Sign(version, s.ServerName, s.KeyID, s.Key); err != nil {
			return "", nil, err
		}
		eventID, err := p.GetEventID(version)
		if err != nil {
			return "", nil, err
		}
		p.InternalMeta.EventID = eventID
		raw, err := json.Marshal(p)
		return eventID, raw, err
	}
	v1, err := toV1(p, newID, hashOf)
	if err != nil {
		return "", nil, err
	}
	if err := v1.Sign(version, s.ServerName, s.KeyID, s.Key); err != nil {
		return "", nil, err
	}
	raw, err := json.Marshal(v1)
	if err != nil {
		return "", nil, err
	}
	signed := fromV1(v1)
	*p = *signed
	return newID, raw, nil
}

// Redact prunes a stored PDU with its room version's redaction algorithm and returns it
// in the same format.
func Redact(version id.RoomVersion, raw []byte) ([]byte, error) {
	if V1Format(version) {
		var v1 pdu.RoomV1PDU
		if err := json.Unmarshal(raw, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(v1.Redact(version))
	}
	var p pdu.PDU
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	return json.Marshal(p.Redact(version))
}
