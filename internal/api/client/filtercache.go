package client

import (
	"crypto/sha256"
	"sync"

	"porthole/internal/filter"
)

// filterCache keeps parsed sync filters: clients send the same inline filter (or filter ID)
// on every /sync, and parsing it each time was a fifth of a busy server's CPU. Parsed
// filters are never modified, so they are shared. Callers choose the keys (an inline
// filter is up to 64 KiB of JSON), so entries are keyed by a hash and the cache is bounded
// by an estimate of the bytes it holds; when full, arbitrary entries make room.
type filterCache struct {
	mu    sync.Mutex
	m     map[[sha256.Size]byte]filterEntry
	bytes int
}

type filterEntry struct {
	f    *filter.Filter
	size int
}

const filterCacheBytes = 16 << 20

// filterSize estimates the memory a parsed filter holds, from its JSON's length.
func filterSize(raw int) int { return 2*raw + 256 }

func (c *filterCache) get(key string) *filter.Filter {
	h := sha256.Sum256([]byte(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[h].f
}

func (c *filterCache) put(key string, f *filter.Filter, rawLen int) {
	size := filterSize(rawLen)
	if size > filterCacheBytes/64 {
		return
	}
	h := sha256.Sum256([]byte(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]filterEntry)
	}
	if old, ok := c.m[h]; ok {
		c.bytes -= old.size
	}
	for k, e := range c.m {
		if c.bytes+size <= filterCacheBytes {
			break
		}
		delete(c.m, k)
		c.bytes -= e.size
	}
	c.m[h] = filterEntry{f: f, size: size}
	c.bytes += size
}

// FilterCacheUse reports the parsed-filter cache's entries and estimated bytes.
func (a *API) FilterCacheUse() (entries, bytes int) { return a.filters.held() }

func (c *filterCache) held() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.bytes
}
