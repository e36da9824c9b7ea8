package client

import (
	"net/http"
	"sync"
	"time"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
)

// PollLimiter caps concurrent long-polls per user and per IP, so one client cannot park
// an unbounded number of requests.
type PollLimiter struct {
	mu             sync.Mutex
	byUser, byIP   map[string]int
	maxUser, maxIP int
}

// NewPollLimiter returns a limiter with the given caps.
func NewPollLimiter(maxUser, maxIP int) *PollLimiter {
	return &PollLimiter{byUser: map[string]int{}, byIP: map[string]int{}, maxUser: maxUser, maxIP: maxIP}
}

// acquire takes a slot for a long-poll, or reports that a cap is reached.
func (p *PollLimiter) acquire(user, ip string) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byUser[user] >= p.maxUser || p.byIP[ip] >= p.maxIP {
		return nil, false
	}
	p.byUser[user]++
	p.byIP[ip]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.byUser[user]--; p.byUser[user] <= 0 {
			delete(p.byUser, user)
		}
		if p.byIP[ip]--; p.byIP[ip] <= 0 {
			delete(p.byIP, ip)
		}
	}, true
}

// longPoll reserves a long-poll slot when a request will wait (timeout > 0).
func (a *API) longPoll(r *http.Request, s *auth.Session, timeout time.Duration) (func(), error) {
	if a.cfg.Limits == nil || a.cfg.Limits.Polls == nil || timeout <= 0 {
		return func() {}, nil
	}
	release, ok := a.cfg.Limits.Polls.acquire(s.UserID, a.limitKey(r))
	if !ok {
		return nil, mxerr.LimitExceeded(1000)
	}
	return release, nil
}
