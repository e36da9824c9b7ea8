package syncer

import (
	"sync"

	"porthole/internal/storage"
)

// lazyCache remembers, per device and room, which member events a lazy-loading client
// was already sent, so incremental syncs do not repeat them (as Synapse does). It is
// bounded and per node: losing it only means a member event is sent again.
type lazyCache struct {
	mu      sync.Mutex
	entries map[string]map[string]string // user|device|room -> member -> event ID
	members int                          // member entries over all of entries
}

// The cache is emptied when it holds this many (device, room) entries or member entries
// in all: device IDs and rooms are chosen by callers, so both counts must be bounded.
const (
	lazyCacheMax        = 100_000
	lazyCacheMaxMembers = 1_000_000
)

func lazyKey(v *viewer, roomID string) string {
	return v.reader.UserID + "|" + v.reader.DeviceID + "|" + roomID
}

func (sy *Syncer) sentMembers(v *viewer, roomID string) map[string]string {
	sy.lazy.mu.Lock()
	defer sy.lazy.mu.Unlock()
	out := map[string]string{}
	for k, id := range sy.lazy.entries[lazyKey(v, roomID)] {
		out[k] = id
	}
	return out
}

func (sy *Syncer) rememberMembers(v *viewer, roomID string, state []storage.Event) {
	sy.lazy.mu.Lock()
	defer sy.lazy.mu.Unlock()
	if sy.lazy.entries == nil || len(sy.lazy.entries) >= lazyCacheMax || sy.lazy.members >= lazyCacheMaxMembers {
		sy.lazy.entries, sy.lazy.members = make(map[string]map[string]string), 0
	}
	key := lazyKey(v, roomID)
	m := sy.lazy.entries[key]
	if m == nil {
		m = map[string]string{}
		sy.lazy.entries[key] = m
	}
	for i := range state {
		if state[i].Type == "m.room.member" {
			if _, ok := m[*state[i].StateKey]; !ok {
				sy.lazy.members++
			}
			m[*state[i].StateKey] = state[i].ID
		}
	}
}
