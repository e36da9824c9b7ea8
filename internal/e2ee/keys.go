package e2ee

import (
	"bytes"
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"slices"
	"strconv"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// SignedCurve25519 is the one-time key algorithm of Olm; its count is always reported, zero
// included, as Synapse does (older clients read a missing count as "unknown").
const SignedCurve25519 = "signed_curve25519"

// KeyCounts fills in the counts every answer carries.
func KeyCounts(counts map[string]int) map[string]int {
	if counts == nil {
		counts = map[string]int{}
	}
	if _, ok := counts[SignedCurve25519]; !ok {
		counts[SignedCurve25519] = 0
	}
	return counts
}

// UploadRequest is the body of POST /keys/upload.
type UploadRequest struct {
	DeviceKeys   jsontext.Value            `json:"device_keys"`
	OneTimeKeys  map[string]jsontext.Value `json:"one_time_keys"`
	FallbackKeys map[string]jsontext.Value `json:"fallback_keys"`
	// The unstable name, which some clients still send.
	UnstableFallbackKeys map[string]jsontext.Value `json:"org.matrix.msc2732.fallback_keys"`
}

// deviceKeysShape is what device_keys must hold.
type deviceKeysShape struct {
	UserID     *string                      `json:"user_id"`
	DeviceID   *string                      `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// checkDeviceKeys validates uploaded device keys: the spec's shape, the session's user and
// device, and a signature by the ed25519 key they contain. It returns the JSON to store
// and that key.
func checkDeviceKeys(raw jsontext.Value, userID, deviceID string) ([]byte, string, error) {
	if raw.Kind() != '{' {
		return nil, "", mxerr.BadJSON("device_keys must be an object")
	}
	var dk deviceKeysShape
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, "", mxerr.BadJSON("device_keys is not a DeviceKeys object").With(err)
	}
	if dk.UserID == nil || dk.DeviceID == nil || dk.Algorithms == nil || dk.Keys == nil || dk.Signatures == nil {
		return nil, "", mxerr.BadJSON("device_keys needs user_id, device_id, algorithms, keys and signatures")
	}
	if *dk.UserID != userID || *dk.DeviceID != deviceID {
		return nil, "", mxerr.InvalidParam("device_keys are for another user or device than this session's")
	}
	edKey := dk.Keys["ed25519:"+deviceID]
	if !validEd25519(edKey) {
		return nil, "", mxerr.InvalidParam("device_keys needs the device's ed25519 key, ed25519:" + deviceID)
	}
	if !verifySigned(raw, userID, deviceID, edKey) {
		return nil, "", invalidSignature("device_keys are not signed by the device's ed25519 key")
	}
	return withoutUnsigned(raw), edKey, nil
}

func invalidSignature(msg string) *mxerr.Error {
	return &mxerr.Error{Status: 400, Code: "M_INVALID_SIGNATURE", Message: msg}
}

// edKeyOf reads the device's ed25519 key out of stored device keys.
func edKeyOf(keyJSON []byte, deviceID string) string {
	var dk deviceKeysShape
	if json.Unmarshal(keyJSON, &dk) != nil {
		return ""
	}
	return dk.Keys["ed25519:"+deviceID]
}

// checkKeyObjects validates uploaded one-time or fallback keys: IDs "algorithm:key_id",
// values strings or key objects signed by the device's ed25519 key edKey.
func checkKeyObjects(what string, keys map[string]jsontext.Value, userID, deviceID, edKey string) ([]storage.OneTimeKey, error) {
	ids := make([]string, 0, len(keys))
	for k := range keys {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	out := make([]storage.OneTimeKey, 0, len(ids))
	for _, keyID := range ids {
		raw := keys[keyID]
		alg, kid, ok := strings.Cut(keyID, ":")
		if !ok || alg == "" || kid == "" || len(keyID) > MaxKeyID {
			return nil, mxerr.InvalidParam(what + " key IDs must be algorithm:key_id, not " + quote(keyID))
		}
		if len(raw) > MaxKeyJSON {
			return nil, mxerr.InvalidParam(what + " key " + quote(keyID) + " is too large")
		}
		switch raw.Kind() {
		case '"':
		case '{':
			var obj struct {
				Key        *string                      `json:"key"`
				Signatures map[string]map[string]string `json:"signatures"`
			}
			if json.Unmarshal(raw, &obj) != nil || obj.Key == nil || obj.Signatures == nil {
				return nil, mxerr.BadJSON(what + " key " + quote(keyID) + " needs key and signatures")
			}
			if edKey == "" {
				return nil, invalidSignature("Upload the device's keys before signed " + what + " keys")
			}
			if !verifySigned(raw, userID, deviceID, edKey) {
				return nil, invalidSignature(what + " key " + quote(keyID) + " is not signed by the device's ed25519 key")
			}
			raw = withoutUnsigned(raw)
		default:
			return nil, mxerr.BadJSON(what + " key " + quote(keyID) + " must be a string or a key object")
		}
		out = append(out, storage.OneTimeKey{ID: keyID, JSON: raw})
	}
	return out, nil
}

// Upload stores a device's keys and returns its one-time key counts. Everything is checked
// before anything is stored; new device keys are announced to those who share a room.
func (s *Service) Upload(ctx context.Context, userID, deviceID string, req UploadRequest) (map[string]int, error) {
	fallback := req.FallbackKeys
	if fallback == nil {
		fallback = req.UnstableFallbackKeys
	}
	if len(req.OneTimeKeys) > MaxOneTimeKeysPerUpload {
		return nil, mxerr.InvalidParam("At most " + strconv.Itoa(MaxOneTimeKeysPerUpload) + " one-time keys per upload")
	}
	if len(fallback) > 16 {
		return nil, mxerr.InvalidParam("Too many fallback keys")
	}
	var newDeviceKeys []byte
	edKey := ""
	hasDeviceKeys := len(req.DeviceKeys) > 0 && req.DeviceKeys.Kind() != 'n'
	if hasDeviceKeys {
		var err error
		if newDeviceKeys, edKey, err = checkDeviceKeys(req.DeviceKeys, userID, deviceID); err != nil {
			return nil, err
		}
	}
	var counts map[string]int
	var changed bool
	body := func(tx storage.Tx) error {
		stored, err := tx.DeviceKeys(ctx, []string{userID})
		if err != nil {
			return err
		}
		var current []byte
		for _, k := range stored {
			if k.DeviceID == deviceID {
				current = k.KeyJSON
			}
		}
		if edKey == "" && current != nil {
			edKey = edKeyOf(current, deviceID)
		}
		otks, err := checkKeyObjects("one-time", req.OneTimeKeys, userID, deviceID, edKey)
		if err != nil {
			return err
		}
		fbs, err := checkKeyObjects("fallback", fallback, userID, deviceID, edKey)
		if err != nil {
			return err
		}
		if newDeviceKeys != nil && !bytes.Equal(newDeviceKeys, current) {
			if err := tx.PutDeviceKeys(ctx, userID, deviceID, newDeviceKeys); err != nil {
				return err
			}
			// Signatures of the old keys do not sign these.
			if err := tx.DeleteKeySignatures(ctx, userID, deviceID); err != nil {
				return err
			}
			changed = true
		}
		if err := s.addOneTimeKeys(ctx, tx, userID, deviceID, otks); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, k := range fbs {
			alg, _, _ := strings.Cut(k.ID, ":")
			if seen[alg] {
				return mxerr.InvalidParam("At most one fallback key per algorithm")
			}
			seen[alg] = true
			if err := tx.PutFallbackKey(ctx, userID, deviceID, storage.FallbackKey{Algorithm: alg, OneTimeKey: k}); err != nil {
				return err
			}
		}
		if counts, err = tx.OneTimeKeyCounts(ctx, userID, deviceID); err != nil {
			return err
		}
		if len(otks)+len(fbs) > 0 {
			return keyCountsChanged(ctx, tx, userID, deviceID)
		}
		return nil
	}
	var err error
	if hasDeviceKeys {
		// Device keys may change, which takes a stream position.
		_, err = s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
			if err := body(tx); err != nil || !changed {
				return nil, err
			}
			pos, err := tx.NextPos(ctx)
			if err != nil {
				return nil, err
			}
			c, err := deviceListChange(ctx, tx, pos, userID, "")
			if err != nil {
				return nil, err
			}
			return []live.Published{announce(pos, c)}, nil
		})
	} else {
		err = s.store.Write(ctx, body)
	}
	if err != nil {
		return nil, internal(err)
	}
	s.hub.KeyCountsChanged(userID, deviceID)
	if changed {
		s.log.Info("device keys uploaded", "user", userID, "device", deviceID)
		s.wakeFor(ctx, userID)
	}
	return KeyCounts(counts), nil
}

// keyCountsChanged tells the other processes sharing the database, once tx commits, that
// the device's key counts changed ("*": all of the user's devices); this process
// invalidates its own after the commit.
func keyCountsChanged(ctx context.Context, tx storage.Tx, userID, deviceID string) error {
	return tx.Notify(ctx, auth.CacheChannel, "keys\t"+userID+"\t"+deviceID)
}

// addOneTimeKeys stores the keys not stored yet; one with a known ID but other content is
// refused, as Synapse does.
func (s *Service) addOneTimeKeys(ctx context.Context, tx storage.Tx, userID, deviceID string, keys []storage.OneTimeKey) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	existing, err := tx.OneTimeKeysByID(ctx, userID, deviceID, ids)
	if err != nil {
		return err
	}
	fresh := keys[:0:0]
	for _, k := range keys {
		old, ok := existing[k.ID]
		if !ok {
			fresh = append(fresh, k)
		} else if !sameKey(old, k.JSON) {
			return mxerr.InvalidParam("One-time key " + quote(k.ID) + " already exists with other content")
		}
	}
	counts, err := tx.OneTimeKeyCounts(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	total := len(fresh)
	for _, n := range counts {
		total += n
	}
	if total > MaxOneTimeKeysPerDevice {
		return mxerr.InvalidParam("A device may hold at most " + strconv.Itoa(MaxOneTimeKeysPerDevice) + " one-time keys")
	}
	return tx.AddOneTimeKeys(ctx, userID, deviceID, fresh)
}

// sameKey compares two key values: strings exactly, objects by content and signatures.
func sameKey(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if jsontext.Value(a).Kind() != '{' || jsontext.Value(b).Kind() != '{' {
		return false
	}
	va, vb := jsontext.Value(bytes.Clone(a)), jsontext.Value(bytes.Clone(b))
	return va.Canonicalize() == nil && vb.Canonicalize() == nil && bytes.Equal(va, vb)
}

// QueryRequest is the body of POST /keys/query.
type QueryRequest struct {
	DeviceKeys map[string][]string `json:"device_keys"`
	Timeout    *int64              `json:"timeout"`
}

// QueryResponse is the answer of POST /keys/query.
type QueryResponse struct {
	DeviceKeys      map[string]map[string]jsontext.Value `json:"device_keys"`
	Failures        map[string]any                       `json:"failures"`
	MasterKeys      map[string]jsontext.Value            `json:"master_keys"`
	SelfSigningKeys map[string]jsontext.Value            `json:"self_signing_keys"`
	UserSigningKeys map[string]jsontext.Value            `json:"user_signing_keys"`
}

// visibleTo reports whether viewer may see a signature on owner's key: the owner's own
// signatures are public, others' only to whoever made them (the spec's social-graph rule).
func visibleTo(sig storage.KeySignature, owner, viewer string) bool {
	return sig.SignerUserID == owner || sig.SignerUserID == viewer
}

// Query answers POST /keys/query for viewer: device keys with their display names and the
// signatures viewer may see, master and self-signing keys, and viewer's own user-signing key.
func (s *Service) Query(ctx context.Context, viewer string, req QueryRequest) (*QueryResponse, error) {
	if req.DeviceKeys == nil {
		return nil, mxerr.BadJSON("device_keys is required")
	}
	if len(req.DeviceKeys) > MaxQueryUsers {
		return nil, mxerr.InvalidParam("At most " + strconv.Itoa(MaxQueryUsers) + " users per query")
	}
	resp := &QueryResponse{
		DeviceKeys: map[string]map[string]jsontext.Value{}, Failures: map[string]any{},
		MasterKeys: map[string]jsontext.Value{}, SelfSigningKeys: map[string]jsontext.Value{}, UserSigningKeys: map[string]jsontext.Value{},
	}
	var local []string
	for u := range req.DeviceKeys {
		server := serverOf(u)
		switch {
		case server == "":
			return nil, errInvalidUser(u)
		case server != s.serverName:
			resp.Failures[server] = remoteFailure
		default:
			local = append(local, u)
			resp.DeviceKeys[u] = map[string]jsontext.Value{}
		}
	}
	if len(resp.Failures) > 0 {
		s.log.Debug("keys query for remote users answered with failures", "servers", len(resp.Failures))
	}
	if len(local) == 0 {
		return resp, nil
	}
	slices.Sort(local)
	devices, err := s.store.DeviceKeys(ctx, local)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	csKeys, err := s.store.CrossSigningKeys(ctx, local)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	sigs, err := s.store.KeySignatures(ctx, local)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	sigsOn := map[[2]string][]storage.KeySignature{}
	for _, sig := range sigs {
		if visibleTo(sig, sig.TargetUserID, viewer) {
			k := [2]string{sig.TargetUserID, sig.TargetKeyID}
			sigsOn[k] = append(sigsOn[k], sig)
		}
	}
	for _, d := range devices {
		if want := req.DeviceKeys[d.UserID]; len(want) > 0 && !slices.Contains(want, d.DeviceID) {
			continue
		}
		resp.DeviceKeys[d.UserID][d.DeviceID] = deviceForQuery(d, sigsOn[[2]string{d.UserID, d.DeviceID}])
	}
	for _, k := range csKeys {
		switch k.Usage {
		case storage.MasterKey:
			resp.MasterKeys[k.UserID] = withSignatures(k.KeyJSON, sigsOn[[2]string{k.UserID, k.KeyID}])
		case storage.SelfSigningKey:
			resp.SelfSigningKeys[k.UserID] = k.KeyJSON
		case storage.UserSigningKey:
			if k.UserID == viewer {
				resp.UserSigningKeys[k.UserID] = k.KeyJSON
			}
		}
	}
	return resp, nil
}

// deviceForQuery is a device's keys as /keys/query shows them: as uploaded, with the
// signatures uploaded since and the unsigned display name.
func deviceForQuery(d storage.DeviceKeys, sigs []storage.KeySignature) jsontext.Value {
	raw := withSignatures(d.KeyJSON, sigs)
	m, ok := members(raw)
	if !ok {
		return raw
	}
	unsigned := []byte(`{}`)
	if d.DisplayName != nil {
		unsigned, _ = json.Marshal(map[string]string{"device_display_name": *d.DisplayName})
	}
	m["unsigned"] = unsigned
	return encodeMembers(m)
}

// ClaimRequest is the body of POST /keys/claim.
type ClaimRequest struct {
	OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	Timeout     *int64                       `json:"timeout"`
}

// ClaimResponse is the answer of POST /keys/claim.
type ClaimResponse struct {
	OneTimeKeys map[string]map[string]map[string]jsontext.Value `json:"one_time_keys"`
	Failures    map[string]any                                  `json:"failures"`
}

// Claim hands out one key per requested device: its oldest one-time key of the algorithm,
// or, when none is left, its fallback key (which is then marked used). Each one-time key is
// given out once, however many claims run at once, on any node.
func (s *Service) Claim(ctx context.Context, req ClaimRequest) (*ClaimResponse, error) {
	if req.OneTimeKeys == nil {
		return nil, mxerr.BadJSON("one_time_keys is required")
	}
	resp := &ClaimResponse{OneTimeKeys: map[string]map[string]map[string]jsontext.Value{}, Failures: map[string]any{}}
	type want struct{ user, device, alg string }
	var wants []want
	for u, devices := range req.OneTimeKeys {
		server := serverOf(u)
		if server == "" {
			return nil, errInvalidUser(u)
		}
		for d, alg := range devices {
			if alg == "" || len(alg) > MaxKeyID || strings.Contains(alg, ":") {
				return nil, mxerr.InvalidParam("Invalid key algorithm " + quote(alg))
			}
			if server != s.serverName {
				resp.Failures[server] = remoteFailure
				continue
			}
			wants = append(wants, want{u, d, alg})
		}
	}
	if len(wants) > MaxClaimDevices {
		return nil, mxerr.InvalidParam("At most " + strconv.Itoa(MaxClaimDevices) + " devices per claim")
	}
	if len(wants) == 0 {
		return resp, nil
	}
	// A fixed order, so that concurrent claims on PostgreSQL take row locks in one order.
	slices.SortFunc(wants, func(a, b want) int {
		return strings.Compare(a.user+"\x00"+a.device, b.user+"\x00"+b.device)
	})
	type claimed struct {
		want
		key storage.OneTimeKey
	}
	var got []claimed
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		got = got[:0]
		for _, w := range wants {
			k, err := tx.ClaimOneTimeKey(ctx, w.user, w.device, w.alg)
			if errors.Is(err, storage.ErrNotFound) {
				k, err = tx.ClaimFallbackKey(ctx, w.user, w.device, w.alg)
			}
			if errors.Is(err, storage.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			got = append(got, claimed{w, k})
		}
		// One notification per user: other processes forget the counts of all of the
		// user's devices (a claim usually takes a key of each).
		var last string
		for _, c := range got {
			if c.user != last {
				if err := keyCountsChanged(ctx, tx, c.user, "*"); err != nil {
					return err
				}
				last = c.user
			}
		}
		return nil
	})
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	for _, c := range got {
		s.hub.KeyCountsChanged(c.user, c.device)
		byDevice := resp.OneTimeKeys[c.user]
		if byDevice == nil {
			byDevice = map[string]map[string]jsontext.Value{}
			resp.OneTimeKeys[c.user] = byDevice
		}
		byDevice[c.device] = map[string]jsontext.Value{c.key.ID: c.key.JSON}
	}
	return resp, nil
}
