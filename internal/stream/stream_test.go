package stream

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, p := range []Pos{0, 1, 41, 1 << 40} {
		got, err := ParseToken(p.Token())
		if err != nil || got != p {
			t.Fatalf("ParseToken(%q) = %d, %v", p.Token(), got, err)
		}
		if string(p.AppendToken(nil)) != p.Token() {
			t.Fatal("AppendToken differs from Token")
		}
	}
}

func TestParseToken(t *testing.T) {
	good := map[string]Pos{"s3456_9_0": 3456, "s7": 7, "t12-40": 40, "s0": 0, "s5_1_2_3_4_5_6_7_8_9_10_11_12": 5}
	for in, want := range good {
		if got, err := ParseToken(in); err != nil || got != want {
			t.Errorf("ParseToken(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "s", "x5", "5", "s-1", "s1.5", "s99999999999999999999", "s5_", "s5_x", "t5", "t-5",
		"s5_1_2_3_4_5_6_7_8_9_10_11_12_13", "s 5", "s5\x00", "END"} {
		if _, err := ParseToken(in); err == nil {
			t.Errorf("ParseToken(%q) accepted garbage", in)
		}
	}
}

func TestNotifierRegisterBeforeRead(t *testing.T) {
	n := NewNotifier(10)
	k := RoomKey("!r")
	ch := n.Listen(k).C()
	// An advance between Listen and the wait must still wake the listener.
	n.Advance(11, k)
	select {
	case <-ch:
	default:
		t.Fatal("listener not woken by an advance after Listen")
	}
	if n.Current() != 11 {
		t.Fatalf("current %d", n.Current())
	}
	// A new Listen gets a fresh channel; other keys do not wake it.
	ch = n.Listen(k).C()
	n.Advance(12, UserKey("@u"))
	select {
	case <-ch:
		t.Fatal("woken by another key")
	default:
	}
	n.Advance(5, k) // positions never go back, but the key is still woken
	if n.Current() != 12 {
		t.Fatalf("position went backwards: %d", n.Current())
	}
	<-ch
	if n.ListenedKeys() != 0 {
		t.Fatalf("woken keys must be dropped, %d left", n.ListenedKeys())
	}
	ch = n.Listen(k).C()
	n.Shutdown()
	select {
	case <-n.Closing():
	case <-time.After(time.Second):
		t.Fatal("shutdown not signalled")
	}
	_ = ch
}

// Listeners that stop waiting release their keys and room subscriptions: a key nobody
// listens to holds nothing, while one still held by another request keeps working.
func TestNotifierRelease(t *testing.T) {
	n := NewNotifier(0)
	a := n.Listen(RoomKey("!quiet"))
	b := n.Listen(RoomKey("!quiet"))
	a.Release()
	a.Release() // twice is harmless
	if n.ListenedKeys() != 1 {
		t.Fatalf("a key still held by another listener was dropped: %d", n.ListenedKeys())
	}
	n.Advance(1, RoomKey("!quiet"))
	select {
	case <-b.C():
	default:
		t.Fatal("the remaining listener was not woken")
	}
	b.Release() // after a wake: nothing to do
	if n.ListenedKeys() != 0 {
		t.Fatalf("keys left: %d", n.ListenedKeys())
	}
	// /sync listeners: a timed-out one leaves no room subscriptions behind.
	u1 := n.ListenUser("@u", []string{"!r1", "!r2"})
	u2 := n.ListenUser("@u", []string{"!r1", "!r2"})
	u1.Release()
	n.Advance(2, RoomKey("!r2"))
	select {
	case <-u2.C():
	default:
		t.Fatal("the user's remaining listener was not woken by its room")
	}
	u3 := n.ListenUser("@u", []string{"!r1"})
	// A stale subscription of the woken generation must not wake the new one.
	n.Advance(3, RoomKey("!r2"))
	select {
	case <-u3.C():
		t.Fatal("woken by a room the current listener did not ask for")
	default:
	}
	u3.Release()
	u2.Release()
	if n.ListenedKeys() != 0 || n.Subscriptions() != 0 {
		t.Fatalf("after every listener left: %d keys, %d subscriptions", n.ListenedKeys(), n.Subscriptions())
	}
	// Many quiet keys that time out hold nothing.
	for i := 0; i < 1000; i++ {
		l := n.ListenUser(fmt.Sprintf("@g%d", i), []string{fmt.Sprintf("!room%d", i)})
		l.Release()
	}
	if n.ListenedKeys() != 0 || n.Subscriptions() != 0 {
		t.Fatalf("after 1000 timed-out listeners: %d keys, %d subscriptions", n.ListenedKeys(), n.Subscriptions())
	}
}

func TestNotifierManyWaiters(t *testing.T) {
	n := NewNotifier(0)
	k := RoomKey("!busy")
	var wg sync.WaitGroup
	ready := make(chan struct{}, 500)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := n.Listen(k).C()
			ready <- struct{}{}
			<-ch
		}()
	}
	for i := 0; i < 500; i++ {
		<-ready
	}
	n.Advance(1, k)
	wg.Wait()
}

// BenchmarkNotifierWake measures waking N parked listeners of one room: one channel close,
// however many wait.
func BenchmarkNotifierWake(b *testing.B) {
	for _, waiters := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("waiters=%d", waiters), func(b *testing.B) {
			n := NewNotifier(0)
			k := RoomKey("!bench")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				var wg sync.WaitGroup
				ch := n.Listen(k).C()
				wg.Add(waiters)
				for w := 0; w < waiters; w++ {
					go func() { <-ch; wg.Done() }()
				}
				b.StartTimer()
				n.Advance(Pos(i+1), k)
				wg.Wait()
			}
		})
	}
}

func BenchmarkListen(b *testing.B) {
	n := NewNotifier(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Listen(RoomKey("!room"))
		}
	})
}

func BenchmarkParseToken(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseToken("s123456789"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendToken(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 32)
	for i := 0; i < b.N; i++ {
		buf = Pos(123456789).AppendToken(buf[:0])
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"s1", "s3456_9_0", "t1-2", "", "END", "s-1", "s99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseToken(s)
		if err != nil {
			return
		}
		if p < 0 {
			t.Fatalf("negative position from %q", s)
		}
		if back, err := ParseToken(p.Token()); err != nil || back != p {
			t.Fatalf("%q -> %d does not round-trip", s, p)
		}
	})
}

// BenchmarkFanoutRound is one round of a peek fan-out as the notifier sees it: 1000
// requests register on one room, one advance wakes them, each releases its registration.
// ns/op divided by 1000 is the notifier's cost per delivery.
func BenchmarkFanoutRound(b *testing.B) {
	n := NewNotifier(0)
	k := RoomKey("!room")
	ls := make([]Listener, 1000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for j := range ls {
			ls[j] = n.Listen(k)
		}
		n.Advance(Pos(i+1), k)
		for j := range ls {
			<-ls[j].C()
			ls[j].Release()
		}
	}
}
