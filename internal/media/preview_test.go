package media

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"porthole/internal/storage/sqlstore"
)

func TestOpenGraph(t *testing.T) {
	base, _ := url.Parse("https://example.org/articles/1")
	cases := []struct {
		name, html string
		want       map[string]any
	}{
		{"og tags", `<html><head><title>Page</title><meta property="og:title" content="The Rock" /><meta property="og:type" content="video.movie">
			<meta property="og:url" content="http://www.imdb.com/title/tt0117500/"><meta property="og:image" content="/img/rock.png"></head></html>`,
			map[string]any{"og:title": "The Rock", "og:type": "video.movie", "og:url": "http://www.imdb.com/title/tt0117500/", "og:image": "https://example.org/img/rock.png"}},
		{"title and description as fallbacks", `<title> A  page </title><meta name="description" content="About it">`,
			map[string]any{"og:title": "A  page", "og:description": "About it"}},
		{"the first of each", `<meta property="og:title" content="one"><meta property="og:title" content="two"><title>t</title>`,
			map[string]any{"og:title": "one"}},
		{"name= works too", `<meta name="og:description" content="d">`, map[string]any{"og:description": "d"}},
		{"no metadata", `<p>hello</p>`, map[string]any{}},
		{"not even HTML", "\x00\x01binary", map[string]any{}},
	}
	for _, c := range cases {
		if got := OpenGraph(strings.NewReader(c.html), base); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	long := strings.Repeat("é", 3000)
	got := OpenGraph(strings.NewReader(`<meta property="og:title" content="`+long+`">`), base)
	if s := got["og:title"].(string); len(s) > maxOGValueBytes || !strings.HasPrefix(long, s) {
		t.Fatalf("a long value is not clipped at a character: %d bytes", len(s))
	}
}

// newTestService runs the repository on a real database (SQLite: the HTTP tests cover
// PostgreSQL), without the HTTP layer.
func newTestService(t *testing.T, cfg Config) *Service {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlstore.Open(context.Background(), "sqlite://"+dir+"/media.db", sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := NewDiskBlobs(dir + "/media")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "hs.test"
	}
	cfg.MaxUploadSize, cfg.MaxImagePixels, cfg.QuotaPeriod, cfg.MaxPending, cfg.PendingExpiry = 1<<20, 1<<24, time.Hour, 5, time.Hour
	s := New(store, blobs, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(s.Close)
	return s
}

func TestPreviewFetch(t *testing.T) {
	img := testPNGBytes(t, 279, 129)
	mux := http.NewServeMux()
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<html><head><meta property="og:title" content="The Rock"><meta property="og:image" content="test.png"></head></html>`)
	})
	mux.HandleFunc("/latin1.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
		io.WriteString(w, "<title>Caf\xe9</title>")
	})
	mux.HandleFunc("/test.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	mux.HandleFunc("/lying.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		io.WriteString(w, "<script>not an image</script>")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/page.html", http.StatusFound) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/file.zip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		w.Write([]byte("PK"))
	})
	remote := httptest.NewServer(mux)
	defer remote.Close()

	s := newTestService(t, Config{URLPreview: true})
	ctx := context.Background()
	// The configured previewer refuses loopback, where the test server is.
	if _, err := s.Preview(ctx, "@a:hs.test", remote.URL+"/page.html"); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("preview of a loopback URL: %v", err)
	}
	s.preview = newPreviewer(s, true)

	og, err := s.Preview(ctx, "@a:hs.test", remote.URL+"/page.html")
	if err != nil {
		t.Fatal(err)
	}
	if og["og:title"] != "The Rock" || og["og:image:width"] != 279 || og["og:image:height"] != 129 || og["og:image:type"] != "image/png" ||
		og["matrix:image:size"] != int64(len(img)) || !strings.HasPrefix(og["og:image"].(string), "mxc://hs.test/") {
		t.Fatalf("preview %v", og)
	}
	m, err := s.Get(ctx, "hs.test", strings.TrimPrefix(og["og:image"].(string), "mxc://hs.test/"), GetOptions{})
	if err != nil || m.Size != int64(len(img)) || m.UserID != "@a:hs.test" {
		t.Fatalf("the preview's image as media: %+v %v", m, err)
	}
	if og, err := s.Preview(ctx, "@a:hs.test", remote.URL+"/test.png"); err != nil || og["og:image:width"] != 279 {
		t.Fatalf("preview of an image: %v %v", og, err)
	}
	if og, err := s.Preview(ctx, "@a:hs.test", remote.URL+"/latin1.html"); err != nil || og["og:title"] != "Café" {
		t.Fatalf("preview of a Latin-1 page: %v %v", og, err)
	}
	if og, err := s.Preview(ctx, "@a:hs.test", remote.URL+"/redirect"); err != nil || og["og:title"] != "The Rock" {
		t.Fatalf("preview through a redirect: %v %v", og, err)
	}
	if og, err := s.Preview(ctx, "@a:hs.test", remote.URL+"/file.zip"); err != nil || len(og) != 0 {
		t.Fatalf("preview of a zip: %v %v", og, err)
	}
	for _, bad := range []string{"/missing", "/loop", "/lying.png"} {
		if _, err := s.Preview(ctx, "@a:hs.test", remote.URL+bad); err == nil || !strings.Contains(err.Error(), "502") {
			t.Errorf("preview of %s: %v", bad, err)
		}
	}
	for _, bad := range []string{"ftp://example.org/", "/relative", "http://user:pw@example.org/", "javascript:alert(1)", "http://" + strings.Repeat("a", 3000)} {
		if _, err := s.Preview(ctx, "@a:hs.test", bad); err == nil || !strings.Contains(err.Error(), "M_INVALID_PARAM") {
			t.Errorf("preview of %q: %v", bad, err)
		}
	}
}
