package e2ee

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"slices"
	"strconv"
	"strings"

	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// ErrAuthRequired is returned by UploadCrossSigning when the upload replaces keys and the
// caller has not proved the user's password (user-interactive auth) yet.
var ErrAuthRequired = errors.New("user-interactive auth required")

// CrossSigningRequest is the body of POST /keys/device_signing/upload (auth aside).
type CrossSigningRequest struct {
	MasterKey      jsontext.Value `json:"master_key"`
	SelfSigningKey jsontext.Value `json:"self_signing_key"`
	UserSigningKey jsontext.Value `json:"user_signing_key"`
}

type crossSigningShape struct {
	UserID     string            `json:"user_id"`
	Usage      []string          `json:"usage"`
	Keys       map[string]string `json:"keys"`
	Signatures jsontext.Value    `json:"signatures"`
}

// checkCrossSigningKey validates one uploaded cross-signing key of the given usage and
// returns its public key.
func checkCrossSigningKey(raw jsontext.Value, userID, usage string) (string, error) {
	if raw.Kind() != '{' || len(raw) > MaxKeyJSON {
		return "", mxerr.BadJSON("The " + usage + " key must be a CrossSigningKey object")
	}
	var k crossSigningShape
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", mxerr.BadJSON("The " + usage + " key is not a CrossSigningKey object").With(err)
	}
	if k.UserID != userID {
		return "", mxerr.InvalidParam("The " + usage + " key is for another user")
	}
	if !slices.Contains(k.Usage, usage) {
		return "", mxerr.InvalidParam("The " + usage + " key's usage lacks " + usage)
	}
	if len(k.Keys) != 1 {
		return "", mxerr.InvalidParam("The " + usage + " key must hold exactly one public key")
	}
	for keyID, pub := range k.Keys {
		if keyID != "ed25519:"+pub || !validEd25519(pub) {
			return "", mxerr.InvalidParam("The " + usage + " key must be ed25519:<public key>")
		}
		return pub, nil
	}
	return "", nil
}

// UploadCrossSigning stores a user's cross-signing keys. The first master key needs no
// proof of the password (the spec lets a user set cross-signing up freely), nor does
// uploading exactly the keys stored already; replacing keys does: without authorized it
// returns ErrAuthRequired, after everything else was checked.
func (s *Service) UploadCrossSigning(ctx context.Context, userID string, req CrossSigningRequest, authorized bool) error {
	type upload struct {
		usage string
		raw   jsontext.Value
		pub   string
	}
	var ups []upload
	for _, u := range []upload{{usage: storage.MasterKey, raw: req.MasterKey}, {usage: storage.SelfSigningKey, raw: req.SelfSigningKey}, {usage: storage.UserSigningKey, raw: req.UserSigningKey}} {
		if len(u.raw) == 0 || u.raw.Kind() == 'n' {
			continue
		}
		pub, err := checkCrossSigningKey(u.raw, userID, u.usage)
		if err != nil {
			return err
		}
		u.pub, u.raw = pub, withoutUnsigned(u.raw)
		ups = append(ups, u)
	}
	var announced bool
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		stored, err := tx.CrossSigningKeys(ctx, []string{userID})
		if err != nil {
			return nil, err
		}
		current := map[string]storage.CrossSigningKey{}
		for _, k := range stored {
			current[k.Usage] = k
		}
		masterPub := current[storage.MasterKey].KeyID
		if len(ups) > 0 && ups[0].usage == storage.MasterKey {
			masterPub = ups[0].pub
		}
		if masterPub == "" {
			return nil, mxerr.MissingParam("No master key available")
		}
		devices, err := tx.Devices(ctx, userID)
		if err != nil {
			return nil, err
		}
		var changed []upload
		for _, u := range ups {
			if u.usage != storage.MasterKey && !verifySigned(u.raw, userID, masterPub, masterPub) {
				return nil, invalidSignature("The " + u.usage + " key is not signed by the master key")
			}
			for _, d := range devices {
				if d.ID == u.pub {
					return nil, mxerr.Forbidden("Key ID in use")
				}
			}
			if old, ok := current[u.usage]; !ok || old.KeyID != u.pub || !sameKey(old.KeyJSON, u.raw) {
				changed = append(changed, u)
			}
		}
		if len(changed) == 0 {
			return nil, nil // the same keys again: nothing to do, no proof needed
		}
		if _, hasMaster := current[storage.MasterKey]; hasMaster && !authorized {
			return nil, ErrAuthRequired
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		var changes []storage.DeviceListChange
		public, own := false, false
		for _, u := range changed {
			if err := tx.PutCrossSigningKey(ctx, storage.CrossSigningKey{UserID: userID, Usage: u.usage, KeyID: u.pub, KeyJSON: u.raw}); err != nil {
				return nil, err
			}
			// Master and self-signing keys concern everyone who shares a room; the
			// user-signing key only the user.
			if u.usage == storage.UserSigningKey {
				own = true
			} else {
				public = true
			}
		}
		for _, c := range []struct {
			on      bool
			onlyFor string
		}{{public, ""}, {own, userID}} {
			if !c.on {
				continue
			}
			ch, err := deviceListChange(ctx, tx, pos, userID, c.onlyFor)
			if err != nil {
				return nil, err
			}
			changes = append(changes, ch)
		}
		announced = public
		return []live.Published{announce(pos, changes...)}, nil
	})
	if err != nil {
		if errors.Is(err, ErrAuthRequired) {
			return ErrAuthRequired
		}
		return internal(err)
	}
	if announced {
		s.log.Info("cross-signing keys uploaded", "user", userID)
		s.wakeFor(ctx, userID)
	}
	return nil
}

// SignatureFailures maps user to key ID to the Matrix error of a refused signature.
type SignatureFailures map[string]map[string]map[string]string

func (f SignatureFailures) add(userID, keyID string, err *mxerr.Error) {
	if f[userID] == nil {
		f[userID] = map[string]map[string]string{}
	}
	f[userID][keyID] = map[string]string{"errcode": err.Code, "error": err.Message}
}

// UploadSignatures stores signatures made by signer: of the signer's own devices by their
// self-signing key, of the signer's master key by their devices, and of other users'
// master keys by the signer's user-signing key. Each signature is verified; those that do
// not verify, or sign something else than the stored key, are returned as failures.
func (s *Service) UploadSignatures(ctx context.Context, signer string, req map[string]map[string]jsontext.Value) (SignatureFailures, error) {
	n := 0
	for u, keys := range req {
		if serverOf(u) == "" {
			return nil, errInvalidUser(u)
		}
		for k, obj := range keys {
			if obj.Kind() != '{' {
				return nil, mxerr.InvalidParam("Each signed key must be a JSON object")
			}
			if k == "" || len(k) > MaxKeyID*2 {
				return nil, mxerr.InvalidParam("Invalid key ID " + quote(k))
			}
			n++
		}
	}
	if n > MaxSignatureUploads {
		return nil, mxerr.InvalidParam("At most " + strconv.Itoa(MaxSignatureUploads) + " signed keys per request")
	}
	failures := SignatureFailures{}
	var signedOthers []string
	ownChanged := false
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		clear(failures)
		signedOthers, ownChanged = nil, false
		var sigs []storage.KeySignature
		if own := req[signer]; len(own) > 0 {
			got, err := s.ownSignatures(ctx, tx, signer, own, failures)
			if err != nil {
				return nil, err
			}
			sigs = append(sigs, got...)
			ownChanged = len(got) > 0
		}
		for u, keys := range req {
			if u == signer || len(keys) == 0 {
				continue
			}
			got, err := s.otherSignatures(ctx, tx, signer, u, keys, failures)
			if err != nil {
				return nil, err
			}
			if len(got) > 0 {
				sigs = append(sigs, got...)
				signedOthers = append(signedOthers, u)
			}
		}
		if len(sigs) == 0 {
			return nil, nil
		}
		if err := tx.PutKeySignatures(ctx, sigs); err != nil {
			return nil, err
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		var changes []storage.DeviceListChange
		if ownChanged {
			c, err := deviceListChange(ctx, tx, pos, signer, "")
			if err != nil {
				return nil, err
			}
			changes = append(changes, c)
		}
		slices.Sort(signedOthers)
		for _, u := range signedOthers {
			c, err := deviceListChange(ctx, tx, pos, u, signer)
			if err != nil {
				return nil, err
			}
			changes = append(changes, c)
		}
		return []live.Published{announce(pos, changes...)}, nil
	})
	if err != nil {
		return nil, internal(err)
	}
	if ownChanged {
		s.wakeFor(ctx, signer)
	}
	return failures, nil
}

// ownSignatures checks signatures of the signer's own keys.
func (s *Service) ownSignatures(ctx context.Context, tx storage.Tx, user string, keys map[string]jsontext.Value, failures SignatureFailures) ([]storage.KeySignature, error) {
	cs, err := tx.CrossSigningKeys(ctx, []string{user})
	if err != nil {
		return nil, err
	}
	var master, ssk storage.CrossSigningKey
	for _, k := range cs {
		switch k.Usage {
		case storage.MasterKey:
			master = k
		case storage.SelfSigningKey:
			ssk = k
		}
	}
	stored, err := tx.DeviceKeys(ctx, []string{user})
	if err != nil {
		return nil, err
	}
	devices := map[string][]byte{}
	for _, d := range stored {
		devices[d.DeviceID] = d.KeyJSON
	}
	var out []storage.KeySignature
	for _, keyID := range sortedKeys(keys) {
		obj := keys[keyID]
		sigs := signatureMap(obj)[user]
		if len(sigs) == 0 {
			failures.add(user, keyID, invalidSignature("No signature of "+user+" on the key"))
			continue
		}
		if master.KeyID != "" && keyID == master.KeyID {
			// The master key, signed by the user's devices.
			got, ferr := masterKeySignatures(user, obj, sigs, master, devices)
			if ferr != nil {
				failures.add(user, keyID, ferr)
				continue
			}
			out = append(out, got...)
			continue
		}
		device, ok := devices[keyID]
		if !ok {
			failures.add(user, keyID, mxerr.NotFound("Unknown device"))
			continue
		}
		if ssk.KeyID == "" {
			failures.add(user, keyID, mxerr.NotFound("No self-signing key found for "+user))
			continue
		}
		signerKeyID := "ed25519:" + ssk.KeyID
		sig, ok := sigs[signerKeyID]
		if !ok {
			failures.add(user, keyID, invalidSignature("The device is not signed by the self-signing key"))
			continue
		}
		if !sameContent(obj, device) || !verifySigned(obj, user, ssk.KeyID, ssk.KeyID) {
			failures.add(user, keyID, invalidSignature("Invalid signature"))
			continue
		}
		out = append(out, storage.KeySignature{TargetUserID: user, TargetKeyID: keyID, SignerUserID: user, SignerKeyID: signerKeyID, Signature: sig})
	}
	return out, nil
}

// masterKeySignatures checks the signatures of a user's devices on their master key.
func masterKeySignatures(user string, obj jsontext.Value, sigs map[string]string, master storage.CrossSigningKey, devices map[string][]byte) ([]storage.KeySignature, *mxerr.Error) {
	if !sameContent(obj, master.KeyJSON) {
		return nil, invalidSignature("The signed key is not the stored master key")
	}
	own := signatureMap(master.KeyJSON)[user]
	var out []storage.KeySignature
	for signerKeyID, sig := range sigs {
		if own[signerKeyID] == sig {
			continue // uploaded with the key itself
		}
		deviceID, ok := strings.CutPrefix(signerKeyID, "ed25519:")
		device, known := devices[deviceID]
		if !ok || !known {
			return nil, invalidSignature("Signed by an unknown device")
		}
		pub := edKeyOf(device, deviceID)
		if pub == "" || !verifySigned(obj, user, deviceID, pub) {
			return nil, invalidSignature("Invalid signature")
		}
		out = append(out, storage.KeySignature{TargetUserID: user, TargetKeyID: master.KeyID, SignerUserID: user, SignerKeyID: signerKeyID, Signature: sig})
	}
	return out, nil
}

// otherSignatures checks signatures by signer's user-signing key of target's master key.
func (s *Service) otherSignatures(ctx context.Context, tx storage.Tx, signer, target string, keys map[string]jsontext.Value, failures SignatureFailures) ([]storage.KeySignature, error) {
	failAll := func(err *mxerr.Error) {
		for k := range keys {
			failures.add(target, k, err)
		}
	}
	if !s.isLocal(target) {
		failAll(&mxerr.Error{Code: "M_UNKNOWN", Message: "Keys of remote users need federation, which this server does not support yet"})
		return nil, nil
	}
	cs, err := tx.CrossSigningKeys(ctx, []string{signer, target})
	if err != nil {
		return nil, err
	}
	var usk, master storage.CrossSigningKey
	for _, k := range cs {
		if k.UserID == signer && k.Usage == storage.UserSigningKey {
			usk = k
		}
		if k.UserID == target && k.Usage == storage.MasterKey {
			master = k
		}
	}
	if usk.KeyID == "" {
		failAll(mxerr.NotFound("No user-signing key found for " + signer))
		return nil, nil
	}
	if master.KeyID == "" {
		failAll(mxerr.NotFound("No master key found for " + target))
		return nil, nil
	}
	var out []storage.KeySignature
	for _, keyID := range sortedKeys(keys) {
		obj := keys[keyID]
		if keyID != master.KeyID {
			failures.add(target, keyID, mxerr.NotFound("Unknown device"))
			continue
		}
		signerKeyID := "ed25519:" + usk.KeyID
		sig, ok := signatureMap(obj)[signer][signerKeyID]
		if !ok {
			failures.add(target, keyID, invalidSignature("The key is not signed by the user-signing key"))
			continue
		}
		if !sameContent(obj, master.KeyJSON) || !verifySigned(obj, signer, usk.KeyID, usk.KeyID) {
			failures.add(target, keyID, invalidSignature("Invalid signature"))
			continue
		}
		out = append(out, storage.KeySignature{TargetUserID: target, TargetKeyID: keyID, SignerUserID: signer, SignerKeyID: signerKeyID, Signature: sig})
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
