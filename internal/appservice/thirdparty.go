package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"time"

	"porthole/internal/mxerr"
)

// Third-party networks: services list the protocols they bridge in their registrations;
// a client's /thirdparty/* request is passed to the services of the protocol and their
// answers are merged (as Synapse). A protocol's metadata is kept for an hour.

// protocolTTL is how long a service's protocol metadata is kept.
const protocolTTL = time.Hour

type protocolKey struct{ service, protocol string }

type protocolInfo struct {
	info    map[string]json.RawMessage
	expires time.Time
}

// protocolCache holds services' protocol metadata; services and protocols are a few.
type protocolCache struct {
	mu sync.Mutex
	m  map[protocolKey]protocolInfo
}

// Protocols returns the metadata of every protocol a service bridges (only, when not
// ""), merged across services: the first service's fields, everyone's instances, each
// with its instance_id ("service id|network_id", which publicRooms accepts as
// third_party_instance_id).
func (s *Service) Protocols(ctx context.Context, only string) map[string]map[string]json.RawMessage {
	var mu sync.Mutex
	var wg sync.WaitGroup
	answers := map[protocolKey]map[string]json.RawMessage{}
	for _, reg := range s.reg.All() {
		for _, p := range reg.Protocols {
			if only != "" && p != only {
				continue
			}
			wg.Add(1)
			go func(reg *Registration, p string) {
				defer wg.Done()
				if info := s.protocolInfo(ctx, reg, p); info != nil {
					mu.Lock()
					answers[protocolKey{reg.ID, p}] = info
					mu.Unlock()
				}
			}(reg, p)
		}
	}
	wg.Wait()
	// Merged in configuration order.
	out := map[string]map[string]json.RawMessage{}
	instances := map[string][]json.RawMessage{}
	for _, reg := range s.reg.All() {
		for _, p := range reg.Protocols {
			info := answers[protocolKey{reg.ID, p}]
			if info == nil {
				continue
			}
			if _, ok := out[p]; !ok {
				merged := make(map[string]json.RawMessage, len(info))
				for k, v := range info {
					merged[k] = v
				}
				out[p] = merged
				instances[p] = []json.RawMessage{}
			}
			var list []json.RawMessage
			json.Unmarshal(info["instances"], &list)
			instances[p] = append(instances[p], list...)
		}
	}
	for p, merged := range out {
		merged["instances"], _ = json.Marshal(instances[p])
	}
	return out
}

// protocolInfo is one service's metadata of a protocol, from the cache or asked (nil when
// the service did not answer with valid metadata).
func (s *Service) protocolInfo(ctx context.Context, reg *Registration, protocol string) map[string]json.RawMessage {
	key := protocolKey{reg.ID, protocol}
	s.protocols.mu.Lock()
	if c, ok := s.protocols.m[key]; ok && time.Now().Before(c.expires) {
		s.protocols.mu.Unlock()
		return c.info
	}
	s.protocols.mu.Unlock()
	if reg.URL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	var info map[string]json.RawMessage
	if err := s.call(ctx, reg, "GET", "/_matrix/app/v1/thirdparty/protocol/"+url.PathEscape(protocol), nil, nil, &info); err != nil {
		s.log.Warn("application service: protocol metadata query failed", "appservice", reg.ID, "protocol", protocol, "err", err)
		return nil
	}
	var list []map[string]json.RawMessage
	if info == nil || json.Unmarshal(info["instances"], &list) != nil {
		s.log.Warn("application service: invalid protocol metadata", "appservice", reg.ID, "protocol", protocol)
		return nil
	}
	for _, inst := range list {
		var network string
		if json.Unmarshal(inst["network_id"], &network) == nil && network != "" {
			inst["instance_id"], _ = json.Marshal(reg.ID + "|" + network)
		}
	}
	info["instances"], _ = json.Marshal(list)
	s.protocols.mu.Lock()
	if s.protocols.m == nil {
		s.protocols.m = map[protocolKey]protocolInfo{}
	}
	s.protocols.m[key] = protocolInfo{info: info, expires: time.Now().Add(protocolTTL)}
	s.protocols.mu.Unlock()
	return info
}

// Lookup kinds of /thirdparty/{kind}.
const (
	LookupUser     = "user"
	LookupLocation = "location"
)

// Lookup passes a third-party lookup (kind user or location, for a protocol or, when
// protocol is "", a reverse lookup) to the services of the protocol, all at once, and
// merges their valid results. Services that fail are left out; when every one failed, the
// answer is an error.
func (s *Service) Lookup(ctx context.Context, kind, protocol string, fields url.Values) ([]json.RawMessage, error) {
	required := "userid"
	if kind == LookupLocation {
		required = "alias"
	}
	path := "/_matrix/app/v1/thirdparty/" + kind
	if protocol != "" {
		path += "/" + url.PathEscape(protocol)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := []json.RawMessage{}
	asked, failed := 0, 0
	var lastErr error
	for _, reg := range s.reg.All() {
		if reg.URL == "" || len(reg.Protocols) == 0 || (protocol != "" && !reg.HasProtocol(protocol)) {
			continue
		}
		asked++
		wg.Add(1)
		go func(reg *Registration) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
			defer cancel()
			var results []json.RawMessage
			err := s.call(ctx, reg, "GET", path, fields, nil, &results)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Warn("application service: third-party lookup failed", "appservice", reg.ID, "path", path, "err", err)
				failed++
				lastErr = err
				return
			}
			for _, r := range results {
				if validResult(r, required) {
					out = append(out, r)
				} else {
					s.log.Info("application service: invalid third-party result left out", "appservice", reg.ID, "path", path)
				}
			}
		}(reg)
	}
	wg.Wait()
	if asked > 0 && failed == asked {
		var ce *callError
		if errors.As(lastErr, &ce) && ce.Timeout {
			return nil, &mxerr.Error{Status: 504, Code: "M_UNKNOWN", Message: "The application services of this protocol did not answer in time"}
		}
		return nil, &mxerr.Error{Status: 502, Code: "M_UNKNOWN", Message: "The application services of this protocol are unavailable"}
	}
	return out, nil
}

// validResult checks one lookup result: an object with the required field and protocol
// as strings, and a fields object.
func validResult(raw json.RawMessage, required string) bool {
	var r map[string]json.RawMessage
	if json.Unmarshal(raw, &r) != nil {
		return false
	}
	for _, k := range []string{required, "protocol"} {
		var s string
		if json.Unmarshal(r[k], &s) != nil {
			return false
		}
	}
	var fields map[string]json.RawMessage
	return json.Unmarshal(r["fields"], &fields) == nil && fields != nil
}
