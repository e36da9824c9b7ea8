package main

import (
	"fmt"
	"net"
	"net/url"
)

// checkLoopback refuses any target that is not on this machine: benchmarks only ever run
// against 127.0.0.0/8, ::1 or localhost.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing %s: only loopback targets (127.0.0.0/8, ::1, localhost) may be measured", host)
	}
	return nil
}
