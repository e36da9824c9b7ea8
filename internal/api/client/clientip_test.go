package client

import (
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	a := &API{cfg: Config{Proxies: ParseProxies([]string{"10.0.0.0/8", "127.0.0.1"})}}
	cases := []struct {
		remote, xff, want string
	}{
		{"192.0.2.7:5000", "203.0.113.9", "192.0.2.7"},               // untrusted peer: header ignored
		{"127.0.0.1:5000", "203.0.113.9", "203.0.113.9"},             // trusted proxy
		{"127.0.0.1:5000", "198.51.100.1, 10.1.2.3", "198.51.100.1"}, // chain of trusted proxies
		{"127.0.0.1:5000", "", "127.0.0.1"},
		{"127.0.0.1:5000", "garbage", "127.0.0.1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := a.clientIP(r); got != c.want {
			t.Errorf("%s with %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
	none := &API{}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if none.clientIP(r) != "127.0.0.1" {
		t.Error("X-Forwarded-For believed without trusted proxies")
	}
}

// Rate limits count an IPv6 client by its /64, so rotating addresses inside it neither
// escapes the limits nor fills the limiters' tables.
func TestLimitKey(t *testing.T) {
	a := &API{cfg: Config{Proxies: ParseProxies([]string{"127.0.0.1"})}}
	key := func(xff string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:5000"
		r.Header.Set("X-Forwarded-For", xff)
		return a.limitKey(r)
	}
	if k1, k2 := key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:1:2:3"); k1 != k2 || k1 != "2001:db8:1:2::/64" {
		t.Fatalf("one /64: %q and %q", k1, k2)
	}
	if key("2001:db8:1:3::1") == key("2001:db8:1:2::1") {
		t.Fatal("two /64s share a key")
	}
	if got := key("203.0.113.9"); got != "203.0.113.9" {
		t.Fatalf("IPv4 key: %q", got)
	}
}
