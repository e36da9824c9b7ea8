// Package web is Porthole's public window: the room directory and every world-readable
// room as server-rendered pages, live through the peek stream, and a compact embed that
// can serve as a comment section. It is another client of the same services the Matrix
// API uses (rooms, syncer): it reads rooms as an anonymous peeker, so it shows exactly what
// the peek stream would, and nothing of rooms that are not world-readable.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"porthole/internal/auth"
	"porthole/internal/media"
	"porthole/internal/mxerr"
	"porthole/internal/ratelimit"
	"porthole/internal/rooms"
	"porthole/internal/stream"
	"porthole/internal/syncer"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Config is what the pages need beyond the services.
type Config struct {
	// Path is the prefix the pages live under, starting and ending with "/".
	Path string
	// BaseURL is the public base URL, for canonical links ("" leaves them relative).
	BaseURL string
	// GuestPosting lets embed visitors post as guests where the room allows guests to join.
	GuestPosting bool
	// FrameAncestors is the CSP frame-ancestors source list of /embed pages.
	FrameAncestors string
	// NoIndex asks search engines to index nothing.
	NoIndex bool
	// Limiter limits page loads per client (nil: no limit); LimitKey names the client.
	Limiter  *ratelimit.Limiter
	LimitKey func(*http.Request) string
	// CommentRooms is the alias localpart prefix of rooms created on first visit ("" off),
	// CommentRoomsOwner the local user they are created by, ServerName this server's name.
	CommentRooms, CommentRoomsOwner, ServerName string
}

// Pages serves the web pages.
type Pages struct {
	rooms *rooms.Service
	sync  *syncer.Syncer
	media *media.Service // nil: images are not shown
	cfg   Config
	log   *slog.Logger
	tmpl  *template.Template
	// comments is nil unless comment rooms are created on first visit.
	comments *commentRooms
	// cache holds each room's rendered first page, valid while nothing happens in the room.
	cache pageCache
}

// pageSize is how many events a room page shows; embedSize, an embed.
const (
	pageSize  = 100
	embedSize = 30
)

// New returns the pages.
func New(r *rooms.Service, s *syncer.Syncer, m *media.Service, cfg Config, log *slog.Logger) *Pages {
	p := &Pages{rooms: r, sync: s, media: m, cfg: cfg, log: log}
	p.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"path": func(parts ...string) string { return cfg.Path + strings.Join(parts, "/") },
	}).ParseFS(templateFiles, "templates/*.html"))
	p.cache.max = 1024
	if cfg.CommentRooms != "" {
		p.comments = &commentRooms{prefix: cfg.CommentRooms, server: cfg.ServerName, owner: auth.Acting(cfg.CommentRoomsOwner),
			limit: ratelimit.New(0.2, 10)}
	}
	return p
}

// Register adds the pages to mux. The directory is the prefix itself ("GET /{$}" for "/").
func (p *Pages) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFiles, "static")
	files := http.FileServerFS(static)
	mux.Handle("GET "+p.cfg.Path+"{$}", p.page(p.directory))
	mux.Handle("GET "+p.cfg.Path+"room/{room}", p.page(p.roomPage))
	mux.Handle("GET "+p.cfg.Path+"room/{room}/event/{eventId}", p.page(p.eventPage))
	mux.Handle("GET "+p.cfg.Path+"embed/{room}", p.page(p.embedPage))
	mux.Handle("GET "+p.cfg.Path+"room/{room}/event/{eventId}/image", p.limited(http.HandlerFunc(p.image)))
	mux.Handle("GET "+p.cfg.Path+"static/{file}", http.StripPrefix(p.cfg.Path+"static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})))
}

// errPage is a page-level failure: status and a sentence for the reader.
type errPage struct {
	status  int
	message string
}

func (e *errPage) Error() string { return e.message }

var errNotFound = &errPage{http.StatusNotFound, "There is no public room here."}

// page wraps a handler: rate limit, security headers, and error pages.
func (p *Pages) page(h func(w http.ResponseWriter, r *http.Request) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		ancestors := "'none'"
		if strings.HasPrefix(r.URL.Path, p.cfg.Path+"embed/") {
			ancestors = p.cfg.FrameAncestors
		}
		hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors "+ancestors)
		if !p.allow(w, r) {
			return
		}
		body, err := h(w, r)
		if err != nil {
			p.writeError(w, err)
			return
		}
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}

// allow applies the per-client page limit, answering 429 when it is spent.
func (p *Pages) allow(w http.ResponseWriter, r *http.Request) bool {
	if p.cfg.Limiter == nil {
		return true
	}
	ok, wait := p.cfg.Limiter.Allow(p.cfg.LimitKey(r))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		p.writeError(w, &errPage{http.StatusTooManyRequests, "Too many page loads from your address; try again in a moment."})
	}
	return ok
}

// limited is a non-page handler under the same per-client limit.
func (p *Pages) limited(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.allow(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

func (p *Pages) writeError(w http.ResponseWriter, err error) {
	var ep *errPage
	var mx *mxerr.Error
	switch {
	case errors.As(err, &ep):
	case errors.As(err, &mx) && (mx.Status == http.StatusNotFound || mx.Status == http.StatusForbidden):
		// Forbidden and not found look the same: a page must not tell whether a private room exists.
		ep = errNotFound
	case errors.As(err, &mx) && mx.Status == http.StatusBadRequest:
		ep = &errPage{http.StatusBadRequest, "That link is not valid."}
	default:
		p.log.Error("web page failed", "err", err)
		ep = &errPage{http.StatusInternalServerError, "Something went wrong on our side."}
	}
	var b bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&b, "error.html", map[string]any{"Status": ep.status, "Message": ep.message, "Path": p.cfg.Path}); err != nil {
		p.log.Error("rendering the error page", "err", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(ep.status)
	w.Write(b.Bytes())
}

func (p *Pages) render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// resolve turns the {room} path value (a room ID or alias) into a room ID; a malformed or
// unknown one is not found.
func (p *Pages) resolve(ctx context.Context, raw string) (string, error) {
	if raw == "" || len(raw) > 255 || (raw[0] != '!' && raw[0] != '#') || !strings.Contains(raw, ":") {
		return "", errNotFound
	}
	roomID, err := p.rooms.ResolveRoom(ctx, raw)
	if err != nil {
		if p.comments.matches(raw) {
			return p.createCommentRoom(ctx, raw)
		}
		return "", errNotFound
	}
	return roomID, nil
}

// token parses a page token from the query ("" is none); a malformed one is a bad link.
func token(r *http.Request, key string) (*stream.Pos, error) {
	raw := r.URL.Query().Get(key)
	if raw == "" {
		return nil, nil
	}
	pos, err := stream.ParseToken(raw)
	if err != nil || pos < 0 {
		return nil, &errPage{http.StatusBadRequest, "That page link is not valid."}
	}
	return &pos, nil
}

// directory is the server's public rooms that the world may read.
func (p *Pages) directory(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 200 {
		q = q[:200]
	}
	since := r.URL.Query().Get("since")
	if len(since) > 100 {
		return nil, &errPage{http.StatusBadRequest, "That page link is not valid."}
	}
	res, err := p.rooms.PublicRooms(r.Context(), rooms.PublicRoomsRequest{Limit: 50, Since: since, Search: q})
	if err != nil {
		return nil, err
	}
	d := directoryView{Site: p.siteFor(r), Query: q}
	d.Title = "Public rooms"
	d.Description = "Rooms anyone may read, live."
	for _, pr := range res.Chunk {
		if !pr.WorldReadable {
			continue
		}
		e := directoryEntry{ID: pr.RoomID, Members: pr.NumJoinedMembers, Link: p.roomLink(pr.RoomID, deref(pr.CanonicalAlias))}
		e.Name = firstNonEmpty(deref(pr.Name), deref(pr.CanonicalAlias), pr.RoomID)
		e.Alias = deref(pr.CanonicalAlias)
		e.Topic = clip(deref(pr.Topic), 300)
		e.Initial = initial(e.Name)
		d.Rooms = append(d.Rooms, e)
	}
	if res.NextBatch != "" {
		d.Next = p.cfg.Path + "?since=" + urlQuery(res.NextBatch) + qParam("q", q)
	}
	if since != "" {
		d.Canonical = ""
	}
	return p.render("directory.html", d)
}

// roomLink is the page of a room, by its alias when it has one.
func (p *Pages) roomLink(roomID, alias string) string {
	if alias != "" {
		return p.cfg.Path + "room/" + pathEscape(alias)
	}
	return p.cfg.Path + "room/" + pathEscape(roomID)
}

// site is what every page needs to know about where it is served.
func (p *Pages) siteFor(r *http.Request) Site {
	return Site{Path: p.cfg.Path, NoIndex: p.cfg.NoIndex, Canonical: p.canonical(r.URL.Path)}
}

func (p *Pages) canonical(path string) string {
	if p.cfg.BaseURL == "" {
		return ""
	}
	return strings.TrimRight(p.cfg.BaseURL, "/") + path
}

// pageCache holds rooms' rendered first pages by room, each with the stream position it was
// rendered at; an entry is used only while nothing has happened in its room since.
type pageCache struct {
	mu      sync.Mutex
	entries map[string]cachedPage
	max     int
}

type cachedPage struct {
	pos  stream.Pos
	body []byte
}

func (c *pageCache) get(key string) (cachedPage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok
}

func (c *pageCache) put(key string, e cachedPage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedPage)
	}
	if len(c.entries) >= c.max {
		for k := range c.entries { // drop an arbitrary entry: a cache miss only costs a render
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
}

// cached serves a room's first page (or embed) from the cache while the room is unchanged,
// rendering it otherwise.
func (p *Pages) cached(ctx context.Context, key, roomID string, render func() ([]byte, error)) ([]byte, error) {
	if e, ok := p.cache.get(key); ok {
		if changed, _ := p.sync.RoomChangedSince(ctx, roomID, e.pos); !changed {
			return e.body, nil
		}
	}
	_, now := p.sync.RoomChangedSince(ctx, roomID, 0)
	body, err := render()
	if err != nil {
		return nil, err
	}
	// The page shows the room as of at least now; anything after now invalidates it.
	p.cache.put(key, cachedPage{pos: now, body: body})
	return body, nil
}

// anonymous is the identity pages read rooms with.
var anonymous = auth.Anonymous()
