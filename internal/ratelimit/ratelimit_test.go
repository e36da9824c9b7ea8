package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(2, 3)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("fourth request: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("keys must not share buckets")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a token should have been refilled after 500 ms at 2/s")
	}
	if ok, _ := New(0, 0).Allow("x"); !ok {
		t.Fatal("a zero rate allows everything")
	}
	var nilL *Limiter
	if ok, _ := nilL.Allow("x"); !ok {
		t.Fatal("a nil limiter allows everything")
	}
}

func TestSweep(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(10, 10)
	l.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		l.Allow(string(rune(i)))
	}
	now = now.Add(2 * time.Minute)
	n := 0
	for i := range l.shards {
		l.sweep(&l.shards[i], now)
		n += len(l.shards[i].buckets)
	}
	if n != 0 {
		t.Fatalf("idle buckets not swept: %d left", n)
	}
}

// However many distinct keys arrive within a minute, a limiter holds a bounded number.
func TestBucketsBounded(t *testing.T) {
	l := New(1, 5)
	for i := 0; i < 64*maxBucketsPerShard+50000; i++ {
		l.Allow(fmt.Sprintf("k%d", i))
	}
	n := 0
	for i := range l.shards {
		n += len(l.shards[i].buckets)
	}
	if n > 64*maxBucketsPerShard {
		t.Fatalf("%d buckets held, more than %d", n, 64*maxBucketsPerShard)
	}
}
