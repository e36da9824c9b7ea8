package client

import (
	"net"
	"net/http"
	"strings"
)

// Proxies is the set of load balancers whose X-Forwarded-For is believed.
type Proxies []*net.IPNet

// ParseProxies reads addresses and CIDR ranges (validated by the config).
func ParseProxies(list []string) Proxies {
	var out Proxies
	for _, p := range list {
		if _, n, err := net.ParseCIDR(p); err == nil {
			out = append(out, n)
		} else if ip := net.ParseIP(p); ip != nil {
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		}
	}
	return out
}

func (p Proxies) trusted(ip net.IP) bool {
	for _, n := range p {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the peer's address; when the peer is a trusted proxy, the right-most
// address in X-Forwarded-For that is not itself a trusted proxy.
func (a *API) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(a.cfg.Proxies) == 0 {
		return host
	}
	ip := net.ParseIP(host)
	if ip == nil || !a.cfg.Proxies.trusted(ip) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := net.ParseIP(strings.TrimSpace(hops[i]))
		if hop == nil {
			break
		}
		if !a.cfg.Proxies.trusted(hop) {
			return hop.String()
		}
	}
	return host
}

// LimitKey is limitKey for other handlers of the same listener (the web pages).
func (a *API) LimitKey(r *http.Request) string { return a.limitKey(r) }

// limitKey is the client's address as rate limits count it: an IPv6 client is its /64,
// the block one subscriber usually holds, so that rotating addresses within it neither
// escapes the limits nor fills the limiters' tables.
func (a *API) limitKey(r *http.Request) string {
	host := a.clientIP(r)
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
