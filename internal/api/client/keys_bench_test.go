package client_test

import (
	"fmt"
	"testing"

	"porthole/internal/hstest"
)

// benchDevices is the number of devices of the user whose keys the benchmarks fetch.
const benchDevices = 50

// fiftyDevices starts a server with a user of benchDevices devices, each with device keys
// and perDevice one-time keys, and cross-signing keys; it returns the user and a second
// user who asks for the keys.
func fiftyDevices(b *testing.B, perDevice int) (*hstest.Client, []*hstest.Client, *hstest.Client) {
	b.Helper()
	s := hstest.New(b)
	owner := s.Register(b, "owner")
	devices := []*hstest.Client{owner}
	for len(devices) < benchDevices {
		devices = append(devices, s.Login(b, owner.UserID, "pw-owner"))
	}
	for _, d := range devices {
		d.Must(b, 200, "POST", "keys/upload", map[string]any{"device_keys": d.DeviceKeys(b, hstest.NewKeyPair())})
		for done := 0; done < perDevice; {
			n := min(perDevice-done, 1000)
			otks := map[string]any{}
			for i := 0; i < n; i++ {
				otks[fmt.Sprintf("signed_curve25519:k%d", done+i)] = fmt.Sprintf("key%d", done+i)
			}
			d.Must(b, 200, "POST", "keys/upload", map[string]any{"one_time_keys": otks})
			done += n
		}
	}
	master, self := hstest.NewKeyPair(), hstest.NewKeyPair()
	owner.Must(b, 200, "POST", "keys/device_signing/upload", map[string]any{
		"master_key":       hstest.CrossSigningKey(owner.UserID, "master", master.Pub),
		"self_signing_key": master.Sign(b, hstest.CrossSigningKey(owner.UserID, "self_signing", self.Pub), owner.UserID, master.Pub),
	})
	return owner, devices, s.Register(b, "asker")
}

// BenchmarkKeysQuery50Devices is one POST /keys/query over HTTP for a user with 50 devices
// (device keys, display names, cross-signing keys and signatures merged).
func BenchmarkKeysQuery50Devices(b *testing.B) {
	owner, _, asker := fiftyDevices(b, 0)
	body := map[string]any{"device_keys": map[string]any{owner.UserID: []string{}}}
	if n := len(asker.Must(b, 200, "POST", "keys/query", body).Get("device_keys." + gjsonKey(owner.UserID)).Map()); n != benchDevices {
		b.Fatalf("%d devices", n)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		asker.Must(b, 200, "POST", "keys/query", body)
	}
}

// BenchmarkKeysClaim50Devices is one POST /keys/claim over HTTP taking a one-time key of
// each of a user's 50 devices (what a client does to open Olm sessions with all of them).
func BenchmarkKeysClaim50Devices(b *testing.B) {
	owner, devices, asker := fiftyDevices(b, b.N)
	want := map[string]string{}
	for _, d := range devices {
		want[d.DeviceID] = "signed_curve25519"
	}
	body := map[string]any{"one_time_keys": map[string]any{owner.UserID: want}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := asker.Must(b, 200, "POST", "keys/claim", body)
		if i == 0 && len(r.Get("one_time_keys."+gjsonKey(owner.UserID)).Map()) != benchDevices {
			b.Fatalf("claim: %s", r)
		}
	}
}
