package client

import (
	"sync"

	"porthole/internal/filter"
)

// filterCache keeps parsed sync filters: clients send the same inline filter (or filter ID)
// on every /sync, and parsing it each time was a fifth of a busy server's CPU. Parsed
// filters are never modified, so they are shared.
type filterCache struct {
	mu sync.Mutex
	m  map[string]*filter.Filter
}

const filterCacheMax = 10000

func (c *filterCache) get(key string) *filter.Filter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *filterCache) put(key string, f *filter.Filter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= filterCacheMax {
		c.m = make(map[string]*filter.Filter)
	}
	c.m[key] = f
}
