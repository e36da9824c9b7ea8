package client_test

import (
	"net/url"
	"testing"

	"porthole/internal/hstest"
)

const backupAlg = "m.megolm_backup.v1.curve25519-aes-sha2"

func keyData(fmi, fc int, verified bool, tag string) map[string]any {
	return map[string]any{"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
		"session_data": map[string]any{"ephemeral": "e", "ciphertext": tag, "mac": "m"}}
}

func TestKeyBackup(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	room := url.PathEscape("!room:localhost")

	// No backup yet: 404 M_NOT_FOUND, the answer Element reads as "none".
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/version", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "PUT", "room_keys/keys/"+room+"/s1?version=1", keyData(0, 0, false, "x"))

	v1 := alice.Must(t, 200, "POST", "room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk1"}}).Get("version").String()
	info := alice.Must(t, 200, "GET", "room_keys/version", nil)
	if info.Get("version").String() != v1 || info.Get("algorithm").String() != backupAlg || info.Get("auth_data.public_key").String() != "pk1" ||
		info.Get("count").Raw != "0" || info.Get("etag").Type.String() != "String" {
		t.Fatalf("backup info: %s", info)
	}
	etag0 := info.Get("etag").String()

	put := func(fmi, fc int, verified bool, tag string) hstest.Response {
		t.Helper()
		return alice.Must(t, 200, "PUT", "room_keys/keys/"+room+"/s1?version="+v1, keyData(fmi, fc, verified, tag))
	}
	get := func() hstest.Response {
		t.Helper()
		return alice.Must(t, 200, "GET", "room_keys/keys/"+room+"/s1?version="+v1, nil)
	}
	r := put(5, 1, false, "first")
	if r.Get("count").Int() != 1 || r.Get("etag").String() == etag0 {
		t.Fatalf("put: %s", r)
	}
	// The better key wins: verified, then the lower first message index, then fewer forwards.
	for _, step := range []struct {
		fmi, fc  int
		verified bool
		tag      string
		want     string
	}{
		{6, 0, false, "later index", "first"},
		{5, 2, false, "more forwards", "first"},
		{5, 1, false, "a tie", "first"},
		{5, 0, false, "fewer forwards", "fewer forwards"},
		{3, 9, false, "lower index", "lower index"},
		{9, 9, true, "verified", "verified"},
		{0, 0, false, "unverified", "verified"},
		{8, 0, true, "verified, lower index", "verified, lower index"},
	} {
		before := get().Get("session_data.ciphertext").String()
		etagBefore := alice.Must(t, 200, "GET", "room_keys/version", nil).Get("etag").String()
		r := put(step.fmi, step.fc, step.verified, step.tag)
		if got := get().Get("session_data.ciphertext").String(); got != step.want {
			t.Fatalf("after uploading %q: kept %q, want %q", step.tag, got, step.want)
		}
		// The etag moves exactly when the stored key changes, and the answer carries it.
		etagAfter := alice.Must(t, 200, "GET", "room_keys/version", nil).Get("etag").String()
		if r.Get("etag").String() != etagAfter || (etagAfter != etagBefore) != (before != step.want) || r.Get("count").Int() != 1 {
			t.Fatalf("after uploading %q: etag %s -> %s (answer %s)", step.tag, etagBefore, etagAfter, r)
		}
	}
	// Several rooms at once, and the reads of a room and of everything.
	other := "!other:localhost"
	r = alice.Must(t, 200, "PUT", "room_keys/keys?version="+v1, map[string]any{"rooms": map[string]any{
		other:             map[string]any{"sessions": map[string]any{"a": keyData(0, 0, false, "oa"), "b": keyData(0, 0, false, "ob")}},
		"!room:localhost": map[string]any{"sessions": map[string]any{"s2": keyData(0, 0, false, "s2")}},
	}})
	if r.Get("count").Int() != 4 {
		t.Fatalf("count after bulk put: %s", r)
	}
	all := alice.Must(t, 200, "GET", "room_keys/keys?version="+v1, nil)
	if len(all.Get("rooms").Map()) != 2 || all.Get("rooms."+gjsonKey(other)+".sessions.b.session_data.ciphertext").String() != "ob" {
		t.Fatalf("all keys: %s", all)
	}
	one := alice.Must(t, 200, "GET", "room_keys/keys/"+url.PathEscape(other)+"?version="+v1, nil)
	if len(one.Get("sessions").Map()) != 2 {
		t.Fatalf("room keys: %s", one)
	}
	if r := alice.Must(t, 200, "GET", "room_keys/keys/"+url.PathEscape("!empty:localhost")+"?version="+v1, nil); string(r.Body) != `{"sessions":{}}` {
		t.Fatalf("empty room: %s", r)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/keys/"+room+"/nosuch?version="+v1, nil)
	r = alice.Must(t, 200, "DELETE", "room_keys/keys/"+url.PathEscape(other)+"/a?version="+v1, nil)
	if r.Get("count").Int() != 3 {
		t.Fatalf("delete one: %s", r)
	}

	// A new version is the current one; writing to the old one is refused with it.
	v2 := alice.Must(t, 200, "POST", "room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk2"}}).Get("version").String()
	e := alice.MustErr(t, 403, "M_WRONG_ROOM_KEYS_VERSION", "PUT", "room_keys/keys/"+room+"/s1?version="+v1, keyData(0, 0, true, "x"))
	if e.Get("current_version").String() != v2 {
		t.Fatalf("wrong version answer: %s", e)
	}
	if r := alice.Must(t, 200, "GET", "room_keys/keys?version="+v2, nil); string(r.Body) != `{"rooms":{}}` {
		t.Fatalf("new version is not empty: %s", r)
	}
	// The old version can still be read.
	if alice.Must(t, 200, "GET", "room_keys/version/"+v1, nil).Get("count").Int() != 3 {
		t.Fatal("old version's count")
	}

	// Updating changes auth_data only.
	alice.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "room_keys/version/"+v2, map[string]any{"algorithm": "m.other", "auth_data": map[string]any{"public_key": "x"}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "room_keys/version/"+v2, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "x"}, "version": v1})
	alice.MustErr(t, 404, "M_NOT_FOUND", "PUT", "room_keys/version/99", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "x"}})
	alice.Must(t, 200, "PUT", "room_keys/version/"+v2, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk2b"}, "version": v2})
	if got := alice.Must(t, 200, "GET", "room_keys/version/"+v2, nil).Get("auth_data.public_key").String(); got != "pk2b" {
		t.Fatalf("auth_data after update: %s", got)
	}

	// Deleting the current version makes the previous one current; deleting again is fine.
	alice.Must(t, 200, "DELETE", "room_keys/version/"+v2, nil)
	if got := alice.Must(t, 200, "GET", "room_keys/version", nil).Get("version").String(); got != v1 {
		t.Fatalf("current after delete: %s", got)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/version/"+v2, nil)
	alice.Must(t, 200, "DELETE", "room_keys/version/"+v2, nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "DELETE", "room_keys/version/77", nil)
	// Numbers are never reused.
	v3 := alice.Must(t, 200, "POST", "room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk3"}}).Get("version").String()
	if v3 == v2 || v3 == v1 {
		t.Fatalf("version number reused: %s", v3)
	}
	// Another user's backups are their own.
	bob := s.Register(t, "bob")
	bob.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/version", nil)
	bob.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/keys?version="+v1, nil)
}

func TestKeyBackupBadInput(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "room_keys/version", map[string]any{"algorithm": "m.megolm_backup.v1", "auth_data": map[string]any{"public_key": "x"}})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": "anopaquestring"})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "room_keys/version", map[string]any{"auth_data": map[string]any{"public_key": "x"}})
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/version", nil)
	v := alice.Must(t, 200, "POST", "room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "x"}}).Get("version").String()
	room := url.PathEscape("!r:localhost")
	alice.MustErr(t, 400, "M_MISSING_PARAM", "GET", "room_keys/keys", nil)
	alice.MustErr(t, 400, "M_MISSING_PARAM", "PUT", "room_keys/keys/"+room+"/s", keyData(0, 0, false, "x"))
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/keys?version=bogus", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "room_keys/version/bogus", nil)
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", "room_keys/keys/"+room+"/s?version="+v, map[string]any{"first_message_index": 0})
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", "room_keys/keys/"+room+"/s?version="+v, map[string]any{"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": "opaque"})
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", "room_keys/keys/"+room+"/s?version="+v, map[string]any{"first_message_index": "0", "forwarded_count": 0, "is_verified": false, "session_data": map[string]any{}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "room_keys/keys/"+room+"/s?version="+v, keyData(-1, 0, false, "x"))
	alice.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "room_keys/keys/"+url.PathEscape("#notaroom")+"/s?version="+v, keyData(0, 0, false, "x"))
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", "room_keys/keys?version="+v, map[string]any{})
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", "room_keys/keys/"+room+"?version="+v, map[string]any{})
	// One bad key refuses the whole upload.
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", "room_keys/keys?version="+v, map[string]any{"rooms": map[string]any{
		"!r:localhost": map[string]any{"sessions": map[string]any{"good": keyData(0, 0, false, "g"), "bad": map[string]any{"is_verified": true}}},
	}})
	if r := alice.Must(t, 200, "GET", "room_keys/keys?version="+v, nil); string(r.Body) != `{"rooms":{}}` {
		t.Fatalf("refused upload stored keys: %s", r)
	}
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "room_keys/version", nil)
}
