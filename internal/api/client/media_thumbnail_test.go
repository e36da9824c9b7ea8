package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"os"
	"strings"
	"testing"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(testPNG(t, w, h)))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testGIF encodes an animated GIF of two frames.
func testGIF(t testing.TB, w, h int) []byte {
	t.Helper()
	anim := &gif.GIF{LoopCount: 0}
	for i, c := range []color.Color{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 255}} {
		frame := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				frame.Set(x, y, c)
			}
		}
		anim.Image = append(anim.Image, frame)
		anim.Delay = append(anim.Delay, 10*(i+1))
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, anim); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// thumb requests a thumbnail and, on 200, checks its headers and decodes its size.
func thumb(t testing.TB, c *hstest.Client, ref, params string) (hstest.Response, int, int) {
	t.Helper()
	r := get(t, c, "/_matrix/client/v1/media/thumbnail/"+ref+"?"+params)
	if r.Status != 200 {
		return r, 0, 0
	}
	ct := r.Header.Get("Content-Type")
	if disp := r.Header.Get("Content-Disposition"); !strings.HasPrefix(disp, "inline; filename=thumbnail.") {
		t.Errorf("thumbnail Content-Disposition %q", disp)
	}
	if r.Header.Get("Cross-Origin-Resource-Policy") != "cross-origin" || !strings.HasPrefix(r.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("thumbnail headers %v", r.Header)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(r.Body))
	if err != nil || "image/"+format != ct {
		t.Fatalf("thumbnail %s is not a %s image: %s %v", params, ct, format, err)
	}
	return r, cfg.Width, cfg.Height
}

func TestMediaThumbnails(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	pngImg := testPNG(t, 800, 600)
	ref := mustUpload(t, alice, "image/png", "big.png", pngImg)
	cases := []struct {
		params       string
		wantW, wantH int
		wantType     string
	}{
		{"width=32&height=32&method=crop", 32, 32, "image/png"},
		{"width=50&height=50&method=crop", 96, 96, "image/png"},
		{"width=320&height=240&method=scale", 320, 240, "image/png"},
		{"width=100&height=100", 320, 240, "image/png"}, // scale is the default
		{"width=400&height=400&method=scale", 640, 480, "image/png"},
		{"width=1000&height=1000&method=scale", 800, 600, "image/png"}, // the original
	}
	for _, c := range cases {
		r, w, h := thumb(t, alice, ref, c.params)
		if r.Status != 200 || w != c.wantW || h != c.wantH || r.Header.Get("Content-Type") != c.wantType {
			t.Fatalf("%s: %d %dx%d %s, want %dx%d %s", c.params, r.Status, w, h, r.Header.Get("Content-Type"), c.wantW, c.wantH, c.wantType)
		}
	}
	r, _, _ := thumb(t, alice, ref, "width=1000&height=1000")
	if !bytes.Equal(r.Body, pngImg) {
		t.Fatal("a request larger than the image did not get the original")
	}
	// Each thumbnail was made once and stored: the original and four thumbnails.
	files := blobFiles(t, s)
	if len(files) != 5 {
		t.Fatalf("stored %d files: %v", len(files), files)
	}
	id := strings.Split(ref, "/")[1]
	th, err := s.Server.Store().Thumbnail(context.Background(), id, 96, 96, "crop")
	if err != nil || th.Width != 96 || th.ContentType != "image/png" || th.Size == 0 {
		t.Fatalf("stored thumbnail %+v (%v)", th, err)
	}
	again, _, _ := thumb(t, alice, ref, "width=50&height=50&method=crop")
	if files := blobFiles(t, s); len(files) != 5 || again.Status != 200 {
		t.Fatalf("a repeated request made another thumbnail: %v", files)
	}

	// Guests may fetch thumbnails; nobody without a token may (authenticated media).
	if r, w, _ := thumb(t, s.Guest(t), ref, "width=32&height=32&method=crop"); r.Status != 200 || w != 32 {
		t.Fatalf("guest thumbnail: %s", r)
	}
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", "/_matrix/client/v1/media/thumbnail/"+ref+"?width=32&height=32", nil)
	// The legacy endpoint serves nothing uploaded after the freeze.
	if r := get(t, s.Anon(), "/_matrix/media/v3/thumbnail/"+ref+"?width=32&height=32"); r.Status != 404 {
		t.Fatalf("legacy thumbnail: %s", r)
	}
}

func TestMediaThumbnailFormats(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.Media.LegacyUnauth = "all" })
	alice := s.Register(t, "alice")

	jpg := mustUpload(t, alice, "image/jpeg", "photo.jpg", testJPEG(t, 1000, 750))
	if r, w, h := thumb(t, alice, jpg, "width=96&height=96&method=crop"); r.Header.Get("Content-Type") != "image/jpeg" || w != 96 || h != 96 {
		t.Fatalf("JPEG crop: %s %dx%d", r.Header.Get("Content-Type"), w, h)
	}
	if r, w, h := thumb(t, alice, jpg, "width=600&height=600&method=scale"); r.Header.Get("Content-Type") != "image/jpeg" || w != 640 || h != 480 {
		t.Fatalf("JPEG scale: %s %dx%d", r.Header.Get("Content-Type"), w, h)
	}
	// "image/jpg" is taken for image/jpeg.
	mustUpload(t, alice, "image/jpg", "", testJPEG(t, 10, 10))

	// An animated GIF: a still of the first frame, unless animation is asked for.
	anim := testGIF(t, 200, 150)
	g := mustUpload(t, alice, "image/gif", "anim.gif", anim)
	if r, w, h := thumb(t, alice, g, "width=32&height=32&method=crop"); r.Header.Get("Content-Type") != "image/png" || w != 32 || h != 32 {
		t.Fatalf("GIF crop: %s %dx%d", r.Header.Get("Content-Type"), w, h)
	}
	if r, w, h := thumb(t, alice, g, "width=500&height=500"); r.Header.Get("Content-Type") != "image/png" || w != 200 || h != 150 {
		t.Fatalf("GIF larger than asked, not animated: %s %dx%d", r.Header.Get("Content-Type"), w, h)
	}
	for _, params := range []string{"width=32&height=32&method=crop&animated=true", "width=500&height=500&animated=true"} {
		r, _, _ := thumb(t, alice, g, params)
		if r.Header.Get("Content-Type") != "image/gif" || !bytes.Equal(r.Body, anim) {
			t.Fatalf("animated GIF with %s: %s", params, r.Header.Get("Content-Type"))
		}
	}
	if r, w, _ := thumb(t, alice, g, "width=32&height=32&method=crop&animated=false"); r.Header.Get("Content-Type") != "image/png" || w != 32 {
		t.Fatalf("animated=false: %s", r.Header.Get("Content-Type"))
	}

	// WebP: JPEG thumbnails of opaque images, PNG of transparent ones.
	op := mustUpload(t, alice, "image/webp", "", testdata(t, "opaque.webp"))
	if r, w, h := thumb(t, alice, op, "width=96&height=96&method=crop"); r.Header.Get("Content-Type") != "image/jpeg" || w != 96 || h != 96 {
		t.Fatalf("opaque WebP: %s %dx%d", r.Header.Get("Content-Type"), w, h)
	}
	al := mustUpload(t, alice, "image/webp", "", testdata(t, "alpha.webp"))
	if r, w, h := thumb(t, alice, al, "width=100&height=100&method=scale"); r.Header.Get("Content-Type") != "image/png" || w != 320 || h != 240 {
		t.Fatalf("WebP with alpha: %s %dx%d", r.Header.Get("Content-Type"), w, h)
	}
	// An animated WebP cannot be decoded here: no still, but the original when animation
	// is asked for.
	aw := testdata(t, "animated.webp")
	awRef := mustUpload(t, alice, "image/webp", "", aw)
	alice.MustErr(t, 400, "M_UNKNOWN", "GET", "/_matrix/client/v1/media/thumbnail/"+awRef+"?width=32&height=32&method=crop", nil)
	if r, _, _ := thumb(t, alice, awRef, "width=32&height=32&animated=true"); !bytes.Equal(r.Body, aw) || r.Header.Get("Content-Type") != "image/webp" {
		t.Fatalf("animated WebP: %s", r)
	}

	// A small image is its own thumbnail.
	small := testPNG(t, 20, 10)
	sm := mustUpload(t, alice, "image/png", "", small)
	if r, _, _ := thumb(t, alice, sm, "width=32&height=32&method=crop"); !bytes.Equal(r.Body, small) {
		t.Fatalf("small image: %s", r)
	}
	// The deprecated endpoint (media from before the freeze: all of them here).
	r := get(t, s.Anon(), "/_matrix/media/v3/thumbnail/"+jpg+"?width=32&height=32&method=crop")
	if r.Status != 200 || r.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("legacy thumbnail: %s", r)
	}
	if r := get(t, s.Anon(), "/_matrix/media/r0/thumbnail/"+jpg+"?width=32&height=32&method=crop"); r.Status != 200 {
		t.Fatalf("legacy r0 thumbnail: %s", r)
	}
}

// pngClaiming is a valid small PNG whose header claims w×h: a decompression bomb's shape.
func pngClaiming(t testing.TB, w, h uint32) []byte {
	t.Helper()
	b := testPNG(t, 4, 4)
	// The IHDR chunk follows the 8-byte signature: length(4) "IHDR" width(4) height(4) ... crc.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestMediaThumbnailBadRequests(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.Media.MaxImagePixels = 1 << 20 })
	alice := s.Register(t, "alice")
	ref := mustUpload(t, alice, "image/png", "", testPNG(t, 100, 100))
	text := mustUpload(t, alice, "text/plain", "", []byte("not an image"))
	pdf := mustUpload(t, alice, "application/pdf", "", []byte("%PDF-1.4 not really"))
	big := mustUpload(t, alice, "image/png", "", testPNG(t, 1025, 1024))
	bomb := mustUpload(t, alice, "image/png", "", pngClaiming(t, 100000, 100000))
	before := len(blobFiles(t, s))
	th := "/_matrix/client/v1/media/thumbnail/"
	cases := []struct {
		path    string
		status  int
		errcode string
	}{
		{th + text + "?width=32&height=32", 400, "M_UNKNOWN"},
		{th + pdf + "?width=32&height=32", 400, "M_UNKNOWN"},
		{th + big + "?width=32&height=32", 413, "M_TOO_LARGE"},
		{th + bomb + "?width=32&height=32&method=crop", 413, "M_TOO_LARGE"},
		{th + ref + "?height=32", 400, "M_MISSING_PARAM"},
		{th + ref + "?width=32", 400, "M_MISSING_PARAM"},
		{th + ref + "?width=0&height=32", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=-5&height=32", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=abc&height=32", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=32.5&height=32", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=10001&height=32", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=99999999999999999999&height=32", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=32&height=32&method=stretch", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=32&height=32&animated=sometimes", 400, "M_INVALID_PARAM"},
		{th + ref + "?width=32&height=32&timeout_ms=x", 400, "M_INVALID_PARAM"},
		{th + "remote.example/abc?width=32&height=32", 502, "M_UNKNOWN"},
		{th + s.Name + "/Unknown?width=32&height=32", 404, "M_NOT_FOUND"},
		{th + s.Name + "/bad.id?width=32&height=32", 404, "M_NOT_FOUND"},
	}
	for _, c := range cases {
		if r := get(t, alice, c.path); r.Status != c.status || r.Get("errcode").String() != c.errcode {
			t.Errorf("GET %s: got %s, want %d %s", c.path, r, c.status, c.errcode)
		}
	}
	if after := len(blobFiles(t, s)); after != before {
		t.Fatalf("refused thumbnail requests stored %d files", after-before)
	}
	// A pending media ID: 504 when it does not wait.
	pending := strings.TrimPrefix(alice.Must(t, 200, "POST", "/_matrix/media/v1/create", nil).Get("content_uri").String(), "mxc://")
	alice.MustErr(t, 504, "M_NOT_YET_UPLOADED", "GET", th+pending+"?width=32&height=32&timeout_ms=0", nil)
}
