package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// newTransport makes an HTTP/1.1 transport able to keep n connections open to one host.
func newTransport(n int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n + 64,
		MaxIdleConnsPerHost: n + 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        nil,
	}
}

// client is a small Matrix client for one account.
type client struct {
	base   string
	http   *http.Client
	token  string
	userID string
	errs   *statusCounter
	// limited counts 429 answers that were waited out.
	limited *atomicInt64
}

// httpError is a non-2xx answer.
type httpError struct {
	Status int
	Body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// do sends a request and returns the body of a 2xx answer. 429 answers are retried after
// retry_after_ms (bounded by ctx).
func (c *client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base+"/_matrix/client/v3/"+path, bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if c.errs != nil && ctx.Err() == nil {
				c.errs.add(0, err)
			}
			return nil, err
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == 429 && attempt < 50 {
			if c.limited != nil {
				c.limited.v.Add(1)
			}
			var e struct {
				RetryAfterMS int64 `json:"retry_after_ms"`
			}
			json.Unmarshal(out, &e)
			select {
			case <-time.After(time.Duration(max(e.RetryAfterMS, 50)) * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if resp.StatusCode/100 != 2 {
			if c.errs != nil {
				c.errs.add(resp.StatusCode, nil)
			}
			return nil, &httpError{Status: resp.StatusCode, Body: string(out)}
		}
		return out, nil
	}
}

// page fetches one of the server's web pages (no token: pages are public).
func (c *client) page(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET /%s: %d", path, resp.StatusCode)
	}
	return out, err
}

func (c *client) doJSON(ctx context.Context, method, path string, body, out any) error {
	raw, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

type loginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	Session     string `json:"session"`
}

// registerUser creates a real user through the m.login.dummy flow.
func registerUser(ctx context.Context, base string, hc *http.Client, errs *statusCounter) (*client, error) {
	c := &client{base: base, http: hc, errs: errs}
	name := fmt.Sprintf("bench%d%06d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	body := map[string]any{"username": name, "password": "bench-" + name, "auth": map[string]any{"type": "m.login.dummy"}}
	var res loginResponse
	raw, err := c.do(ctx, "POST", "register", body)
	if he, ok := err.(*httpError); ok && he.Status == 401 {
		json.Unmarshal([]byte(he.Body), &res)
		body["auth"] = map[string]any{"type": "m.login.dummy", "session": res.Session}
		raw, err = c.do(ctx, "POST", "register", body)
	}
	if err != nil {
		return nil, fmt.Errorf("registering a user: %w", err)
	}
	if err := json.Unmarshal(raw, &res); err != nil || res.AccessToken == "" {
		return nil, fmt.Errorf("registering a user: unexpected answer %s", raw)
	}
	c.token, c.userID = res.AccessToken, res.UserID
	return c, nil
}

// registerGuest creates a guest.
func registerGuest(ctx context.Context, base string, hc *http.Client, errs *statusCounter) (*client, error) {
	c := &client{base: base, http: hc, errs: errs}
	var res loginResponse
	if err := c.doJSON(ctx, "POST", "register?kind=guest", map[string]any{}, &res); err != nil {
		return nil, fmt.Errorf("registering a guest: %w", err)
	}
	c.token, c.userID = res.AccessToken, res.UserID
	return c, nil
}

// createPublicRoom creates a world-readable room open to guests.
func (c *client) createPublicRoom(ctx context.Context) (string, error) {
	var res struct {
		RoomID string `json:"room_id"`
	}
	err := c.doJSON(ctx, "POST", "createRoom", map[string]any{
		"preset": "public_chat",
		"name":   "porthole-bench",
		"initial_state": []map[string]any{
			{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "world_readable"}},
			{"type": "m.room.guest_access", "state_key": "", "content": map[string]string{"guest_access": "can_join"}},
		},
	}, &res)
	return res.RoomID, err
}

func (c *client) join(ctx context.Context, roomID string) error {
	_, err := c.do(ctx, "POST", "join/"+url.PathEscape(roomID), map[string]any{})
	return err
}

// send sends a message; txn makes it idempotent.
func (c *client) send(ctx context.Context, roomID, txn string, content map[string]any) error {
	_, err := c.do(ctx, "PUT", "rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+url.PathEscape(txn), content)
	return err
}

func eventsPath(roomID, from string, timeoutMS int) string {
	p := "events?room_id=" + url.QueryEscape(roomID) + "&timeout=" + strconv.Itoa(timeoutMS)
	if from != "" {
		p += "&from=" + url.QueryEscape(from)
	}
	return p
}

// syncFilter keeps sync answers to the timeline the benchmark measures.
const syncFilter = `{"room":{"timeline":{"limit":100},"state":{"types":[]},"ephemeral":{"types":[]},"account_data":{"types":[]}},"presence":{"types":[]},"account_data":{"types":[]}}`

func syncPath(since string, timeoutMS int) string {
	p := "sync?timeout=" + strconv.Itoa(timeoutMS) + "&set_presence=offline&filter=" + url.QueryEscape(syncFilter)
	if since != "" {
		p += "&since=" + url.QueryEscape(since)
	}
	return p
}
