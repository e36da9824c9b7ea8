package main

import (
	"context"
	"io"
	"testing"
	"time"

	"porthole/internal/hstest"
)

// The CI smoke run: a small fanout against a real Porthole, in both modes, checking only
// correctness (every watcher gets every message exactly once), never speed.
func TestFanoutSmoke(t *testing.T) {
	s := hstest.New(t)
	for _, mode := range []string{"peek", "sync"} {
		t.Run(mode, func(t *testing.T) {
			cfg := fanoutConfig{watchers: 50, messages: 20, rate: 50, mode: mode, setupConc: 16, drain: 20 * time.Second, pollTimeout: 30000, settle: time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := fanout(ctx, &targets{urls: []string{s.URL}}, cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Missed != 0 || res.Duplicated != 0 || res.Delivered != 50*20 {
				t.Fatalf("%s: delivered %d, missed %d, duplicated %d, errors %v", mode, res.Delivered, res.Missed, res.Duplicated, res.Errors)
			}
		})
	}
}

func TestFanoutNullServer(t *testing.T) {
	ns, err := startNull("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.close()
	for _, mode := range []string{"peek", "sync"} {
		cfg := fanoutConfig{watchers: 20, messages: 10, rate: 50, mode: mode, setupConc: 8, drain: 10 * time.Second, pollTimeout: 30000, settle: time.Second}
		res, err := fanout(context.Background(), &targets{urls: []string{ns.url}}, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if res.Missed != 0 || res.Duplicated != 0 {
			t.Fatalf("null %s: missed %d duplicated %d", mode, res.Missed, res.Duplicated)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8008", "http://localhost:1", "http://[::1]:80", "http://127.9.9.9"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1", "http://example.org", "https://8.8.8.8:443", "ftp://127.0.0.1", "127.0.0.1:8008", ""} {
		if err := checkLoopback(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := summarize(ds)
	if p.P50 != 50 || p.P95 != 95 || p.P99 != 99 || p.Max != 100 || p.Count != 100 {
		t.Fatalf("%+v", p)
	}
	if summarize(nil).Count != 0 {
		t.Fatal("empty")
	}
	if got := benchSeqs([]byte(`{"bench_seq":3},{"x":1,"bench_seq":12}`)); len(got) != 2 || got[0] != 3 || got[1] != 12 {
		t.Fatalf("benchSeqs %v", got)
	}
	if stringField([]byte(`{"end":"s12","start":"s1"}`), `"end":"`) != "s12" {
		t.Fatal("stringField")
	}
}
