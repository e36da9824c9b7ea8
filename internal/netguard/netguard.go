// Package netguard is the policy for outgoing connections to addresses that others choose
// (push gateways named by users, federation servers named by anyone): the address actually
// dialled, after DNS and for every connection, must be a public unicast address unless
// private addresses are allowed, and TLS trusts the system's roots plus a configured bundle.
package netguard

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrForbiddenAddress is the refusal of an address that is not public.
var ErrForbiddenAddress = errors.New("address is loopback, private, link-local or otherwise not public")

// forbiddenPrefixes are the special-purpose ranges Synapse refuses by default.
var forbiddenPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Forbidden reports whether addr is not a public unicast address (IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry).
func Forbidden(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range forbiddenPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Control returns a net.Dialer Control function that refuses forbidden addresses, or nil
// when private addresses are allowed. refused, if not nil, is called for each refusal (a
// metric). It runs on the address about to be connected to, so a name that resolves to a
// public address when checked and to a private one when dialled (DNS rebinding) is caught.
func Control(allowPrivate bool, what string, refused func()) func(network, address string, _ syscall.RawConn) error {
	if allowPrivate {
		return nil
	}
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || Forbidden(ap.Addr()) {
			if refused != nil {
				refused()
			}
			return fmt.Errorf("%s: refusing to connect to %s: %w", what, address, ErrForbiddenAddress)
		}
		return nil
	}
}

// RootCAs is the system's certificate pool plus the PEM certificates in extra (which must
// hold at least one when it is not empty).
func RootCAs(extra []byte) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(extra) > 0 && !roots.AppendCertsFromPEM(extra) {
		return nil, errors.New("no PEM certificate found")
	}
	return roots, nil
}
