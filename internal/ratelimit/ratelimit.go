// Package ratelimit is a token-bucket limiter keyed by strings (IP addresses, user IDs).
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// maxBucketsPerShard bounds a limiter to 64 × 16384 ≈ one million keys, whatever callers
// send as keys.
const maxBucketsPerShard = 16384

// Limiter allows Rate events per second per key, with bursts up to Burst.
type Limiter struct {
	rate   float64
	burst  float64
	shards [64]shard
	seed   maphash.Seed
	now    func() time.Time
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter; a zero or negative rate allows everything.
func New(ratePerSecond float64, burst int) *Limiter {
	l := &Limiter{rate: ratePerSecond, burst: float64(max(burst, 1)), seed: maphash.MakeSeed(), now: time.Now}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// Allow takes one token for key. When none is left it reports how long until one is.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	now := l.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l.sweep(sh, now)
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= maxBucketsPerShard {
			// Full of keys that are all still counting: drop one arbitrary bucket, which
			// at worst lets that key start a fresh burst.
			for k := range sh.buckets {
				delete(sh.buckets, k)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// sweep drops full buckets now and then, so idle keys hold no memory.
func (l *Limiter) sweep(sh *shard, now time.Time) {
	if now.Sub(sh.swept) < time.Minute {
		return
	}
	sh.swept = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range sh.buckets {
		if now.Sub(b.last) > full {
			delete(sh.buckets, k)
		}
	}
}
