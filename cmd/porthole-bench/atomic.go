package main

import "sync/atomic"

type atomicInt64 struct{ v atomic.Int64 }

func (a *atomicInt64) load() int64 { return a.v.Load() }

func (a *atomicInt64) max(n int64) {
	for {
		cur := a.v.Load()
		if n <= cur || a.v.CompareAndSwap(cur, n) {
			return
		}
	}
}
