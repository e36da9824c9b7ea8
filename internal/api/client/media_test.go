package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// testPNG encodes a w×h PNG with a gradient (so that scaled versions differ).
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 255 / max(w-1, 1)), uint8(y * 255 / max(h-1, 1)), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// uploadMedia posts content to /_matrix/media/v3/upload (filename "" for none).
func uploadMedia(t testing.TB, c *hstest.Client, contentType, filename string, body []byte) hstest.Response {
	t.Helper()
	path := "/_matrix/media/v3/upload"
	if filename != "" {
		path += "?filename=" + url.QueryEscape(filename)
	}
	req, err := http.NewRequest("POST", path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return c.SendRequest(t, req)
}

// mustUpload uploads and returns "server/mediaId" of the content URI.
func mustUpload(t testing.TB, c *hstest.Client, contentType, filename string, body []byte) string {
	t.Helper()
	r := uploadMedia(t, c, contentType, filename, body)
	if r.Status != 200 {
		t.Fatalf("upload: %s", r)
	}
	uri := r.Get("content_uri").String()
	if !strings.HasPrefix(uri, "mxc://"+c.S.Name+"/") {
		t.Fatalf("content_uri %q", uri)
	}
	return strings.TrimPrefix(uri, "mxc://")
}

// get sends a GET with extra headers.
func get(t testing.TB, c *hstest.Client, path string, header ...string) hstest.Response {
	t.Helper()
	req, err := http.NewRequest("GET", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.SendRequest(t, req)
}

// assertDownloadHeaders checks the headers every download carries.
func assertDownloadHeaders(t testing.TB, r hstest.Response, contentType, disposition string) {
	t.Helper()
	want := map[string]string{
		"Content-Type":                 contentType,
		"Content-Disposition":          disposition,
		"Cross-Origin-Resource-Policy": "cross-origin",
		"X-Content-Type-Options":       "nosniff",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox;") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

// blobFiles lists the content files of a server's media store (temporary files apart).
func blobFiles(t testing.TB, s *hstest.Server) []string {
	t.Helper()
	dir := filepath.Join(dataDir(s), "media")
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

// dataDir finds the server's data directory from its config.
func dataDir(s *hstest.Server) string { return s.Server.Config().DataDir }

func TestMediaUploadAndDownload(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	img := testPNG(t, 40, 30)
	ref := mustUpload(t, alice, "image/png", "cat.png", img)

	for _, c := range []*hstest.Client{alice, bob, s.Guest(t)} {
		r := get(t, c, "/_matrix/client/v1/media/download/"+ref)
		if r.Status != 200 || !bytes.Equal(r.Body, img) {
			t.Fatalf("download by %s: %d, %d bytes", c.UserID, r.Status, len(r.Body))
		}
		assertDownloadHeaders(t, r, "image/png", "inline; filename=cat.png")
		if r.Header.Get("Content-Length") != fmt.Sprint(len(img)) {
			t.Errorf("Content-Length %q", r.Header.Get("Content-Length"))
		}
	}
	// The file name in the path replaces the uploaded one.
	r := get(t, bob, "/_matrix/client/v1/media/download/"+ref+"/"+url.PathEscape("Zürich photo.png"))
	if r.Status != 200 || !bytes.Equal(r.Body, img) {
		t.Fatalf("download with a file name: %s", r)
	}
	assertDownloadHeaders(t, r, "image/png", "inline; filename*=utf-8''Z%C3%BCrich%20photo.png")

	// Authenticated media need a token; the deprecated endpoint serves nothing uploaded
	// after the freeze (by default, everything).
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", "/_matrix/client/v1/media/download/"+ref, nil)
	r = get(t, s.Anon(), "/_matrix/media/v3/download/"+ref)
	if r.Status != 404 || r.Get("errcode").String() != "M_NOT_FOUND" {
		t.Fatalf("legacy download of new media: %s", r)
	}

	for _, path := range []string{"/_matrix/client/v1/media/config", "/_matrix/media/v3/config", "/_matrix/media/r0/config"} {
		if got := alice.Must(t, 200, "GET", path, nil).Get(`m\.upload\.size`).Int(); got != 50<<20 {
			t.Fatalf("%s: m.upload.size %d", path, got)
		}
	}
	// Downloads are on the spec's guest list; uploads and the configuration are not.
	guest := s.Guest(t)
	if r := uploadMedia(t, guest, "text/plain", "", []byte("hi")); r.Status != 403 || r.Get("errcode").String() != "M_GUEST_ACCESS_FORBIDDEN" {
		t.Fatalf("guest upload: %s", r)
	}
	guest.MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "/_matrix/client/v1/media/config", nil)
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "POST", "/_matrix/media/v3/upload", "x")
}

func TestMediaHeadersAndDisposition(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	cases := []struct {
		contentType, filename string
		wantType, wantDisp    string
	}{
		{"text/plain", "notes.txt", "text/plain; charset=UTF-8", "inline; filename=notes.txt"},
		{"text/plain; charset=ISO-8859-1", "", "text/plain; charset=ISO-8859-1", "inline"},
		{"text/html", "page.html", "text/html; charset=UTF-8", "attachment; filename=page.html"},
		{"image/svg+xml", "x.svg", "image/svg+xml; charset=UTF-8", "attachment; filename=x.svg"},
		{"application/pdf", `a "quoted" name.pdf`, "application/pdf", `attachment; filename="a \"quoted\" name.pdf"`},
		{"application/octet-stream", "привет.bin", "application/octet-stream", "attachment; filename*=utf-8''%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82.bin"},
		{"", "", "application/octet-stream", "attachment"},
		{"video/mp4", "clip;1.mp4", "video/mp4", `inline; filename="clip;1.mp4"`},
		{"application/json", "line\nbreak.json", "application/json; charset=UTF-8", "inline; filename*=utf-8''line%0Abreak.json"},
	}
	for _, c := range cases {
		ref := mustUpload(t, alice, c.contentType, c.filename, []byte("some content "+c.filename))
		r := get(t, alice, "/_matrix/client/v1/media/download/"+ref)
		if r.Status != 200 {
			t.Fatalf("%q: %s", c.contentType, r)
		}
		assertDownloadHeaders(t, r, c.wantType, c.wantDisp)
	}
}

func TestMediaRangeAndConditional(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	ref := mustUpload(t, alice, "text/plain", "", []byte("0123456789"))
	r := get(t, alice, "/_matrix/client/v1/media/download/"+ref, "Range", "bytes=2-5")
	if r.Status != 206 || string(r.Body) != "2345" || r.Header.Get("Content-Range") != "bytes 2-5/10" {
		t.Fatalf("range: %d %q %q", r.Status, r.Body, r.Header.Get("Content-Range"))
	}
	etag := get(t, alice, "/_matrix/client/v1/media/download/"+ref).Header.Get("ETag")
	if r := get(t, alice, "/_matrix/client/v1/media/download/"+ref, "If-None-Match", etag); r.Status != 304 {
		t.Fatalf("If-None-Match: %d", r.Status)
	}
}

func TestMediaDeduplicatesContent(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	body := bytes.Repeat([]byte("same bytes "), 1000)
	a := mustUpload(t, alice, "text/plain", "a.txt", body)
	b := mustUpload(t, bob, "application/octet-stream", "b.bin", body)
	if a == b {
		t.Fatal("two uploads got one media ID")
	}
	if files := blobFiles(t, s); len(files) != 1 {
		t.Fatalf("identical uploads stored as %v", files)
	}
	// Each keeps its own type and name.
	assertDownloadHeaders(t, get(t, bob, "/_matrix/client/v1/media/download/"+b), "application/octet-stream", "attachment; filename=b.bin")
	assertDownloadHeaders(t, get(t, bob, "/_matrix/client/v1/media/download/"+a), "text/plain; charset=UTF-8", "inline; filename=a.txt")
}

// storedNothing checks that refused uploads left no blob, no temporary file and no
// media row (nothing counts against the user's quota).
func storedNothing(t testing.TB, s *hstest.Server, userID string) {
	t.Helper()
	if files := blobFiles(t, s); len(files) != 0 {
		t.Fatalf("refused uploads left files: %v", files)
	}
	used, err := s.Server.Store().MediaUploadedSince(context.Background(), userID, 0)
	if err != nil || used != 0 {
		t.Fatalf("refused uploads were recorded: %d bytes (%v)", used, err)
	}
}

func TestMediaBadUploads(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.Media.MaxUploadSize = 4096 })
	alice := s.Register(t, "alice")
	expect := func(what string, r hstest.Response, status int, errcode string) {
		t.Helper()
		if r.Status != status || r.Get("errcode").String() != errcode {
			t.Fatalf("%s: got %s, want %d %s", what, r, status, errcode)
		}
	}
	expect("empty", uploadMedia(t, alice, "text/plain", "", nil), 400, "M_INVALID_PARAM")
	expect("over the limit", uploadMedia(t, alice, "application/octet-stream", "", make([]byte, 4097)), 413, "M_TOO_LARGE")
	expect("a text claiming to be a PNG", uploadMedia(t, alice, "image/png", "", []byte("<html><script>alert(1)</script></html>")), 403, "M_FORBIDDEN")
	expect("a JPEG claiming to be a PNG", uploadMedia(t, alice, "image/png", "", []byte("\xff\xd8\xff\xe0 not really")), 403, "M_FORBIDDEN")
	truncated := testPNG(t, 20, 20)[:20]
	expect("a truncated PNG", uploadMedia(t, alice, "image/png", "", truncated), 403, "M_FORBIDDEN")
	expect("a malformed Content-Type", uploadMedia(t, alice, "image/", "", []byte("x")), 400, "M_INVALID_PARAM")
	expect("a filename that is not UTF-8", alice.SendRequest(t, mustRequest(t, "POST", "/_matrix/media/v3/upload?filename=%FF", "text/plain", strings.NewReader("x"))), 400, "M_INVALID_PARAM")

	// A chunked body (no Content-Length) is cut off once past the limit.
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 1024)
		for i := 0; i < 64; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req := mustRequest(t, "POST", "/_matrix/media/v3/upload", "application/octet-stream", pr)
	req.ContentLength = -1
	expect("chunked over the limit", alice.SendRequest(t, req), 413, "M_TOO_LARGE")
	pr.Close()
	storedNothing(t, s, alice.UserID)

	// Exactly the limit is fine.
	mustUpload(t, alice, "application/octet-stream", "", make([]byte, 4096))
}

func mustRequest(t testing.TB, method, path, contentType string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func TestMediaQuota(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.Media.UploadQuota = 10000; c.Media.MaxUploadSize = 8000 })
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	mustUpload(t, alice, "application/octet-stream", "", make([]byte, 6000))
	before := blobFiles(t, s)
	if r := uploadMedia(t, alice, "application/octet-stream", "", bytes.Repeat([]byte{1}, 6000)); r.Status != 403 || r.Get("errcode").String() != "M_FORBIDDEN" {
		t.Fatalf("upload past the quota: %s", r)
	}
	if after := blobFiles(t, s); len(after) != len(before) {
		t.Fatalf("a refused upload was stored: %v", after)
	}
	// What is left of the quota can still be used; other users have their own.
	mustUpload(t, alice, "application/octet-stream", "", bytes.Repeat([]byte{2}, 4000))
	mustUpload(t, bob, "application/octet-stream", "", bytes.Repeat([]byte{3}, 6000))
	// The quota is per period: a day later it is free again.
	s.Server.Media().SetClock(func() time.Time { return time.Now().Add(25 * time.Hour) })
	mustUpload(t, alice, "application/octet-stream", "", bytes.Repeat([]byte{4}, 6000))
}

func TestMediaUploadRate(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) {
		c.RateLimit = "on"
		c.UserRequestsBurst, c.IPRequestsBurst, c.RegisterBurst = 1000, 1000, 1000
		c.Media.UploadsPerSec, c.Media.UploadsBurst = 0.001, 3
	})
	alice := s.Register(t, "alice")
	for i := 0; i < 3; i++ {
		mustUpload(t, alice, "text/plain", "", []byte(fmt.Sprint("upload ", i)))
	}
	r := uploadMedia(t, alice, "text/plain", "", []byte("one too many"))
	if r.Status != 429 || r.Get("errcode").String() != "M_LIMIT_EXCEEDED" || r.Get("retry_after_ms").Int() <= 0 {
		t.Fatalf("upload over the rate: %s", r)
	}
	alice.MustErr(t, 429, "M_LIMIT_EXCEEDED", "POST", "/_matrix/media/v1/create", nil)
	// Another user has a rate of their own.
	mustUpload(t, s.Register(t, "bob"), "text/plain", "", []byte("bob's"))
}

func TestMediaAsyncUpload(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	r := alice.Must(t, 200, "POST", "/_matrix/media/v1/create", nil)
	uri := r.Get("content_uri").String()
	expires := r.Get("unused_expires_at").Int()
	if d := time.UnixMilli(expires).Sub(time.Now()); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("unused_expires_at %d is %s away, want 24h", expires, d)
	}
	ref := strings.TrimPrefix(uri, "mxc://")
	put := func(c *hstest.Client, ref string, body string) hstest.Response {
		return c.SendRequest(t, mustRequest(t, "PUT", "/_matrix/media/v3/upload/"+ref+"?filename=late.txt", "text/plain", strings.NewReader(body)))
	}

	// Not yet uploaded: a download that does not wait gets 504.
	alice.MustErr(t, 504, "M_NOT_YET_UPLOADED", "GET", "/_matrix/client/v1/media/download/"+ref+"?timeout_ms=0", nil)
	// Another user may not upload to it.
	if r := put(bob, ref, "bob's"); r.Status != 403 || r.Get("errcode").String() != "M_FORBIDDEN" {
		t.Fatalf("upload to another user's media ID: %s", r)
	}
	// A download waiting for the content gets it when it arrives.
	var wg sync.WaitGroup
	var waited hstest.Response
	wg.Add(1)
	go func() {
		defer wg.Done()
		waited = bob.Do(t, "GET", "/_matrix/client/v1/media/download/"+ref+"?timeout_ms=20000", nil)
	}()
	if r := put(alice, ref, "arrived"); r.Status != 200 {
		t.Fatalf("async upload: %s", r)
	}
	wg.Wait()
	if waited.Status != 200 || string(waited.Body) != "arrived" {
		t.Fatalf("waiting download: %s", waited)
	}
	assertDownloadHeaders(t, get(t, bob, "/_matrix/client/v1/media/download/"+ref), "text/plain; charset=UTF-8", "inline; filename=late.txt")
	if r := put(alice, ref, "again"); r.Status != 409 || r.Get("errcode").String() != "M_CANNOT_OVERWRITE_MEDIA" {
		t.Fatalf("second upload: %s", r)
	}
	// An uploaded (not created) ID cannot be uploaded to either.
	plain := mustUpload(t, alice, "text/plain", "", []byte("plain"))
	if r := put(alice, plain, "over"); r.Status != 409 || r.Get("errcode").String() != "M_CANNOT_OVERWRITE_MEDIA" {
		t.Fatalf("upload to an uploaded ID: %s", r)
	}
	for _, bad := range []string{s.Name + "/NoSuchMediaID", "other.example/" + strings.Split(ref, "/")[1], s.Name + "/bad.id"} {
		if r := put(alice, bad, "x"); r.Status != 404 || r.Get("errcode").String() != "M_NOT_FOUND" {
			t.Fatalf("upload to %s: %s", bad, r)
		}
	}
	if r := get(t, bob, "/_matrix/client/v1/media/download/"+ref); string(r.Body) != "arrived" {
		t.Fatalf("content changed: %s", r)
	}
}

func TestMediaPendingLimitAndExpiry(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	var refs []string
	for i := 0; i < 5; i++ {
		refs = append(refs, strings.TrimPrefix(alice.Must(t, 200, "POST", "/_matrix/media/v1/create", nil).Get("content_uri").String(), "mxc://"))
	}
	r := alice.MustErr(t, 429, "M_LIMIT_EXCEEDED", "POST", "/_matrix/media/v1/create", nil)
	if ms := r.Get("retry_after_ms").Int(); ms < 23*3600*1000 || ms > 24*3600*1000 {
		t.Fatalf("retry_after_ms %d, want about a day", ms)
	}
	// Uploading to one frees its place.
	put := func(ref string) hstest.Response {
		return alice.SendRequest(t, mustRequest(t, "PUT", "/_matrix/media/v3/upload/"+ref, "text/plain", strings.NewReader("content")))
	}
	if r := put(refs[0]); r.Status != 200 {
		t.Fatal(r)
	}
	alice.Must(t, 200, "POST", "/_matrix/media/v1/create", nil)

	// A day later the unused IDs have expired: uploads and downloads find nothing, and
	// they no longer count.
	s.Server.Media().SetClock(func() time.Time { return time.Now().Add(24*time.Hour + time.Minute) })
	if r := put(refs[1]); r.Status != 404 || r.Get("errcode").String() != "M_NOT_FOUND" {
		t.Fatalf("upload to an expired ID: %s", r)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "/_matrix/client/v1/media/download/"+refs[2]+"?timeout_ms=0", nil)
	alice.Must(t, 200, "POST", "/_matrix/media/v1/create", nil)
	n, err := s.Server.Media().DeleteExpired(context.Background())
	if err != nil || n != 5 {
		t.Fatalf("expired IDs deleted: %d (%v), want 5", n, err)
	}
	// The uploaded one stays.
	if r := get(t, alice, "/_matrix/client/v1/media/download/"+refs[0]); r.Status != 200 {
		t.Fatal(r)
	}
}

func TestMediaIDsAndParameters(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	ref := mustUpload(t, alice, "text/plain", "", []byte("hello"))
	id := strings.Split(ref, "/")[1]
	cases := []struct {
		path    string
		status  int
		errcode string
	}{
		// Remote media need federation: answered as Synapse does when the origin cannot
		// be reached; allow_remote=false asks not to try.
		{"/_matrix/client/v1/media/download/remote.example/" + id, 502, "M_UNKNOWN"},
		{"/_matrix/media/v3/download/remote.example/" + id, 502, "M_UNKNOWN"},
		{"/_matrix/media/v3/download/remote.example/" + id + "?allow_remote=false", 404, "M_NOT_FOUND"},
		{"/_matrix/client/v1/media/download/" + url.PathEscape("bad server!") + "/" + id, 400, "M_INVALID_PARAM"},
		{"/_matrix/client/v1/media/download/" + s.Name + "/no.such%2Fid", 404, "M_NOT_FOUND"},
		{"/_matrix/client/v1/media/download/" + s.Name + "/" + strings.Repeat("a", 300), 404, "M_NOT_FOUND"},
		{"/_matrix/client/v1/media/download/" + s.Name + "/Unknown", 404, "M_NOT_FOUND"},
		{"/_matrix/client/v1/media/download/" + ref + "?timeout_ms=soon", 400, "M_INVALID_PARAM"},
		{"/_matrix/client/v1/media/download/" + ref + "?timeout_ms=-1", 400, "M_INVALID_PARAM"},
		{"/_matrix/client/v1/media/download/" + ref + "?allow_redirect=maybe", 400, "M_INVALID_PARAM"},
		{"/_matrix/media/v3/download/" + ref + "?allow_remote=perhaps", 400, "M_INVALID_PARAM"},
	}
	for _, c := range cases {
		r := get(t, alice, c.path)
		if r.Status != c.status || r.Get("errcode").String() != c.errcode {
			t.Errorf("GET %s: got %s, want %d %s", c.path, r, c.status, c.errcode)
		}
	}
	// Valid parameters change nothing: this server never redirects, and a long timeout
	// does not delay uploaded content.
	if r := get(t, alice, "/_matrix/client/v1/media/download/"+ref+"?allow_redirect=true&timeout_ms=999999999"); r.Status != 200 || string(r.Body) != "hello" {
		t.Fatalf("download with allow_redirect: %s", r)
	}
}

func TestMediaLegacyUnauthenticatedCutoff(t *testing.T) {
	cutoff := time.Now().Add(time.Hour)
	s := hstest.New(t, func(c *config.Config) { c.Media.LegacyUnauth = cutoff.UTC().Format(time.RFC3339) })
	alice := s.Register(t, "alice")
	before := mustUpload(t, alice, "text/plain", "old.txt", []byte("from before the freeze"))
	s.Server.Media().SetClock(func() time.Time { return cutoff.Add(time.Minute) })
	after := mustUpload(t, alice, "text/plain", "new.txt", []byte("from after the freeze"))

	r := get(t, s.Anon(), "/_matrix/media/v3/download/"+before)
	if r.Status != 200 || string(r.Body) != "from before the freeze" {
		t.Fatalf("legacy download of old media: %s", r)
	}
	assertDownloadHeaders(t, r, "text/plain; charset=UTF-8", "inline; filename=old.txt")
	if r := get(t, s.Anon(), "/_matrix/media/r0/download/"+before+"/other.txt"); r.Status != 200 || r.Header.Get("Content-Disposition") != "inline; filename=other.txt" {
		t.Fatalf("legacy r0 download with a file name: %s %v", r, r.Header)
	}
	if r := get(t, alice, "/_matrix/media/v3/download/"+after); r.Status != 404 || r.Get("errcode").String() != "M_NOT_FOUND" {
		t.Fatalf("legacy download of new media: %s", r)
	}
	// Both are served by the authenticated endpoint.
	for _, ref := range []string{before, after} {
		if r := get(t, alice, "/_matrix/client/v1/media/download/"+ref); r.Status != 200 {
			t.Fatalf("authenticated download: %s", r)
		}
	}
}

func TestMediaStoreLayout(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	mustUpload(t, alice, "text/plain", "", []byte("layout"))
	files := blobFiles(t, s)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	// Content-addressed: ab/cd/abcd… named by the SHA-256.
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte("layout")))
	if want := sum[:2] + "/" + sum[2:4] + "/" + sum; files[0] != want {
		t.Fatalf("blob path %q, want %q", files[0], want)
	}
	raw, err := os.ReadFile(filepath.Join(dataDir(s), "media", files[0]))
	if err != nil || string(raw) != "layout" {
		t.Fatalf("blob content %q (%v)", raw, err)
	}
}

func TestMediaPreviewURL(t *testing.T) {
	// Off by default: the endpoint is not there (as Synapse).
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	for _, path := range []string{"/_matrix/client/v1/media/preview_url?url=https://example.org/", "/_matrix/media/v3/preview_url?url=https://example.org/"} {
		alice.MustErr(t, 404, "M_UNRECOGNIZED", "GET", path, nil)
	}

	// On, it never fetches from loopback (or any non-public address), where this test's
	// page is: the page is never asked for.
	fetched := make(chan string, 1)
	page := httptestServer(t, func(w http.ResponseWriter, r *http.Request) { fetched <- r.URL.Path })
	s = hstest.New(t, func(c *config.Config) { c.Media.URLPreview = "on" })
	alice = s.Register(t, "alice")
	for _, target := range []string{page + "/secret", "http://localhost:1/", "http://[::1]:1/", "http://10.0.0.1:1/", "http://169.254.169.254/latest/meta-data/"} {
		alice.MustErr(t, 502, "M_UNKNOWN", "GET", "/_matrix/client/v1/media/preview_url?url="+url.QueryEscape(target), nil)
	}
	select {
	case p := <-fetched:
		t.Fatalf("the preview fetched %s from loopback", p)
	default:
	}
	alice.MustErr(t, 400, "M_MISSING_PARAM", "GET", "/_matrix/client/v1/media/preview_url", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", "/_matrix/client/v1/media/preview_url?url="+url.QueryEscape("file:///etc/passwd"), nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", "/_matrix/client/v1/media/preview_url?url=https://example.org/&ts=yesterday", nil)
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "/_matrix/client/v1/media/preview_url?url=https://example.org/", nil)
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", "/_matrix/media/v3/preview_url?url=https://example.org/", nil)
}

func httptestServer(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
