package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/charset"
	"golang.org/x/sync/singleflight"

	"porthole/internal/mxerr"
	"porthole/internal/netguard"
	"porthole/internal/storage"
)

// URL previews fetch what users name, so every bound is fixed here: the page and image
// sizes, the time, the redirects, and the memory the answers are cached in.
const (
	maxPreviewURL     = 2048
	maxPreviewPage    = 4 << 20 // HTML read for its metadata
	maxPreviewImage   = 10 << 20
	previewTimeout    = 10 * time.Second
	maxRedirects      = 5
	previewCacheSize  = 1024
	previewCacheTTL   = time.Hour
	maxOGValueBytes   = 2048
	maxOGKeys         = 64
	previewUserAgent  = "Porthole (URL preview bot)"
	previewAcceptHTML = "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.5"
)

// previewer fetches pages and images for URL previews.
type previewer struct {
	s      *Service
	client *http.Client
	flight singleflight.Group

	mu    sync.Mutex
	cache map[string]cachedPreview
}

type cachedPreview struct {
	og      map[string]any
	expires time.Time
}

// newPreviewer makes the fetcher; allowLoopback is for tests of this package only (the
// HTTP server tests run on loopback), never set by configuration.
func newPreviewer(s *Service, allowLoopback bool) *previewer {
	dialer := &net.Dialer{Timeout: previewTimeout, Control: netguard.Control(allowLoopback, "URL preview", nil)}
	p := &previewer{s: s, cache: map[string]cachedPreview{}}
	p.client = &http.Client{
		Timeout: previewTimeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   previewTimeout,
			ResponseHeaderTimeout: previewTimeout,
			MaxIdleConns:          16,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			return checkPreviewURL(req.URL)
		},
	}
	return p
}

// URLPreviewEnabled reports whether GET /preview_url is served.
func (s *Service) URLPreviewEnabled() bool { return s.preview != nil }

// Preview returns the OpenGraph data of a URL (GET /media/preview_url), with an image
// stored as media of the user. Answers are cached for an hour.
func (s *Service) Preview(ctx context.Context, userID, rawURL string) (map[string]any, error) {
	if s.preview == nil {
		return nil, mxerr.Unrecognized("URL previews are disabled")
	}
	u, err := url.Parse(rawURL)
	if err != nil || len(rawURL) > maxPreviewURL || checkPreviewURL(u) != nil {
		return nil, mxerr.InvalidParam("url must be an absolute http or https URL")
	}
	u.Fragment = ""
	key := u.String()
	p := s.preview
	p.mu.Lock()
	c, ok := p.cache[key]
	p.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.og, nil
	}
	v, err, _ := p.flight.Do(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*previewTimeout)
		defer cancel()
		return p.fetch(ctx, userID, u)
	})
	if err != nil {
		return nil, err
	}
	og := v.(map[string]any)
	p.mu.Lock()
	if len(p.cache) >= previewCacheSize {
		for k, e := range p.cache {
			if len(p.cache) < previewCacheSize && time.Now().Before(e.expires) {
				break
			}
			delete(p.cache, k)
		}
	}
	p.cache[key] = cachedPreview{og: og, expires: time.Now().Add(previewCacheTTL)}
	p.mu.Unlock()
	return og, nil
}

func checkPreviewURL(u *url.URL) error {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return errors.New("not an http(s) URL")
	}
	return nil
}

func errFetch() error { return mxerr.BadGateway("Could not fetch the URL to preview") }

// fetch builds a preview: of an image, the image itself; of an HTML page, its OpenGraph
// metadata (with <title> and the description as fallbacks) and its og:image.
func (p *previewer) fetch(ctx context.Context, userID string, u *url.URL) (map[string]any, error) {
	resp, err := p.get(ctx, u.String())
	if err != nil {
		p.s.log.Info("URL preview fetch failed", "url", u.String(), "err", err)
		return nil, errFetch()
	}
	defer resp.Body.Close()
	contentType := resp.Header.Get("Content-Type")
	base := baseType(contentType)
	switch {
	case thumbnailable(base):
		og := map[string]any{}
		if err := p.storeImage(ctx, userID, resp, og); err != nil {
			p.s.log.Info("URL preview image", "url", u.String(), "err", err)
			return nil, errFetch()
		}
		return og, nil
	case base == "text/html" || base == "application/xhtml+xml":
		body, err := charset.NewReader(io.LimitReader(resp.Body, maxPreviewPage), contentType)
		if err != nil {
			return map[string]any{}, nil
		}
		og := OpenGraph(body, resp.Request.URL)
		if img, ok := og["og:image"].(string); ok {
			delete(og, "og:image")
			p.previewImage(ctx, userID, img, og)
		}
		return og, nil
	}
	return map[string]any{}, nil // nothing to show of other content
}

func (p *previewer) get(ctx context.Context, rawURL string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", previewUserAgent)
	req.Header.Set("Accept", previewAcceptHTML)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return resp, nil
}

// previewImage fetches a page's og:image (best effort: a page without its image is still
// a preview).
func (p *previewer) previewImage(ctx context.Context, userID, rawURL string, og map[string]any) {
	u, err := url.Parse(rawURL)
	if err != nil || checkPreviewURL(u) != nil {
		return
	}
	resp, err := p.get(ctx, u.String())
	if err != nil {
		p.s.log.Info("URL preview image fetch failed", "url", rawURL, "err", err)
		return
	}
	defer resp.Body.Close()
	if !thumbnailable(baseType(resp.Header.Get("Content-Type"))) {
		return
	}
	if err := p.storeImage(ctx, userID, resp, og); err != nil {
		p.s.log.Info("URL preview image", "url", rawURL, "err", err)
	}
}

// storeImage stores an image answer as media of the user, checked as an upload is, and
// describes it in og.
func (p *previewer) storeImage(ctx context.Context, userID string, resp *http.Response, og map[string]any) error {
	contentType, err := normalizeContentType(resp.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	st, err := p.s.stage(resp.Body, maxPreviewImage)
	if err != nil {
		return err
	}
	defer st.discard()
	if st.size > maxPreviewImage || st.size == 0 {
		return fmt.Errorf("image of %d bytes", st.size)
	}
	m := storage.Media{UserID: userID, ContentType: contentType, Size: st.size, SHA256: st.hash}
	if m.Width, m.Height, err = checkContent(contentType, st); err != nil {
		return err
	}
	if err := p.s.blobs.Put(ctx, st.hash, st.file); err != nil {
		return err
	}
	st.file = nil
	if err := p.s.record(ctx, &m); err != nil {
		return err
	}
	og["og:image"] = MXC(p.s.cfg.ServerName, m.ID)
	og["og:image:type"] = baseType(contentType)
	og["matrix:image:size"] = m.Size
	og["og:image:width"] = m.Width
	og["og:image:height"] = m.Height
	return nil
}

// OpenGraph reads the OpenGraph metadata of an HTML page: og:* <meta> properties (the
// first of each), <title> when there is no og:title, the description when there is no
// og:description; og:image is resolved against base. Values are bounded in size and
// number.
func OpenGraph(r io.Reader, base *url.URL) map[string]any {
	og := map[string]any{}
	var title, description string
	z := html.NewTokenizer(r)
	inTitle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if _, ok := og["og:title"]; !ok && title != "" {
				og["og:title"] = clip(strings.TrimSpace(title))
			}
			if _, ok := og["og:description"]; !ok && description != "" {
				og["og:description"] = clip(description)
			}
			if img, ok := og["og:image"].(string); ok && base != nil {
				if u, err := base.Parse(img); err == nil {
					og["og:image"] = u.String()
				}
			}
			return og
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "title":
				inTitle = tt == html.StartTagToken && title == ""
			case "meta":
				var key, content string
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					switch string(k) {
					case "property", "name":
						if key == "" || strings.HasPrefix(string(v), "og:") {
							key = string(v)
						}
					case "content":
						content = string(v)
					}
				}
				switch {
				case strings.HasPrefix(key, "og:"):
					if _, seen := og[key]; !seen && len(og) < maxOGKeys {
						og[key] = clip(content)
					}
				case key == "description" && description == "":
					description = content
				}
			}
		case html.TextToken:
			if inTitle {
				title += string(z.Text())
				if len(title) > maxOGValueBytes {
					inTitle = false
				}
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "title" {
				inTitle = false
			}
		}
	}
}

// clip bounds an OpenGraph value (dropping a character cut in two).
func clip(s string) string {
	if len(s) <= maxOGValueBytes {
		return s
	}
	return strings.ToValidUTF8(s[:maxOGValueBytes], "")
}
