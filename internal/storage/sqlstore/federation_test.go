package sqlstore_test

import (
	"context"
	"errors"
	"testing"

	"porthole/internal/storage"
)

func TestServerKeys(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			put := func(keys ...storage.ServerKey) {
				t.Helper()
				if err := s.Write(ctx, func(tx storage.Tx) error { return tx.PutServerKeys(ctx, keys) }); err != nil {
					t.Fatal(err)
				}
			}
			get := func() map[string]storage.ServerKey {
				t.Helper()
				keys, err := s.ServerKeys(ctx, "b.example")
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]storage.ServerKey{}
				for _, k := range keys {
					out[k.KeyID] = k
				}
				return out
			}
			put(storage.ServerKey{ServerName: "b.example", KeyID: "ed25519:1", Key: "k1", ValidUntilTS: 2000, Response: []byte(`{"r":1}`), FetchedTS: 10},
				storage.ServerKey{ServerName: "other.example", KeyID: "ed25519:1", Key: "x", ValidUntilTS: 1, Response: []byte(`{}`)})
			// A stale answer does not shorten a key's validity; a response listing another
			// key leaves the first alone.
			put(storage.ServerKey{ServerName: "b.example", KeyID: "ed25519:1", Key: "k1", ValidUntilTS: 1000, Response: []byte(`{"r":0}`), FetchedTS: 11},
				storage.ServerKey{ServerName: "b.example", KeyID: "ed25519:2", Key: "k2", ValidUntilTS: 3000, Response: []byte(`{"r":2}`), FetchedTS: 11})
			got := get()
			if len(got) != 2 || got["ed25519:1"].ValidUntilTS != 2000 || string(got["ed25519:1"].Response) != `{"r":1}` || got["ed25519:2"].Key != "k2" {
				t.Fatalf("keys after a stale answer: %+v", got)
			}
			// The server's word that a key expired is taken.
			put(storage.ServerKey{ServerName: "b.example", KeyID: "ed25519:1", Key: "k1", ValidUntilTS: 1500, Expired: true, Response: []byte(`{"r":3}`), FetchedTS: 12})
			if k := get()["ed25519:1"]; !k.Expired || k.ValidUntilTS != 1500 || k.FetchedTS != 12 {
				t.Fatalf("expiry not recorded: %+v", k)
			}
			// Own keys: the current one first, the replaced ones expired.
			for i, id := range []string{"ed25519:a", "ed25519:a", "ed25519:b"} {
				if err := s.Write(ctx, func(tx storage.Tx) error { return tx.SetOwnKey(ctx, id, "pub-"+id, int64(100+i)) }); err != nil {
					t.Fatal(err)
				}
			}
			own, err := s.OwnKeys(ctx)
			if err != nil || len(own) != 2 || own[0].KeyID != "ed25519:b" || own[0].ExpiredTS != 0 || own[1].KeyID != "ed25519:a" || own[1].ExpiredTS != 102 {
				t.Fatalf("own keys: %+v %v", own, err)
			}
		})
	}
}

func TestFederationTxns(t *testing.T) {
	ctx := context.Background()
	for name, s := range engines(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := s.FederationTxn(ctx, "b.example", "t1"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("unknown txn: %v", err)
			}
			put := func(origin, txn, resp string, now int64) {
				t.Helper()
				if err := s.Write(ctx, func(tx storage.Tx) error { return tx.PutFederationTxn(ctx, origin, txn, []byte(resp), now, now-100) }); err != nil {
					t.Fatal(err)
				}
			}
			put("b.example", "t1", `{"pdus":{}}`, 1000)
			put("b.example", "t1", `{"other":1}`, 1001) // the first answer stays
			put("c.example", "t1", `{"c":1}`, 1002)
			if got, err := s.FederationTxn(ctx, "b.example", "t1"); err != nil || string(got) != `{"pdus":{}}` {
				t.Fatalf("txn answer: %s %v", got, err)
			}
			put("c.example", "t2", `{}`, 5000) // forgets what is older than 4900
			if _, err := s.FederationTxn(ctx, "b.example", "t1"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("old txn not forgotten: %v", err)
			}
		})
	}
}
