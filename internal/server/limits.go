package server

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// raiseFileLimit lifts the soft open-files limit to the hard one: every parked long-poll
// holds a socket. It returns the limit in force.
func raiseFileLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// limitListener caps open connections: at the cap, Accept waits for one to close (the
// kernel queues the rest), and says so in the log at most once a minute.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	log    *slog.Logger
	mu     sync.Mutex
	warned time.Time
}

func newLimitListener(ln net.Listener, max int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, max), log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.mu.Lock()
		if time.Since(l.warned) > time.Minute {
			l.warned = time.Now()
			l.log.Warn("connection limit reached: new connections wait until others close", "max_connections", cap(l.slots))
		}
		l.mu.Unlock()
		l.slots <- struct{}{}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
