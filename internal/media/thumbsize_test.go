package media

import (
	"bytes"
	"image"
	"image/png"
	"testing"
)

func TestBoxSize(t *testing.T) {
	cases := []struct {
		box          Box
		w, h         int
		wantW, wantH int
	}{
		{Box{320, 240, Scale}, 4000, 3000, 320, 240},
		{Box{320, 240, Scale}, 3000, 4000, 180, 240},
		{Box{320, 240, Scale}, 4000, 1000, 320, 80},
		{Box{320, 240, Scale}, 100, 50, 100, 50},   // never upscaled
		{Box{320, 240, Scale}, 320, 240, 320, 240}, // exactly the box
		{Box{800, 600, Scale}, 100000, 1, 800, 1},  // at least one pixel
		{Box{800, 600, Scale}, 1, 100000, 1, 600},
		{Box{96, 96, Crop}, 4000, 3000, 96, 96},
		{Box{96, 96, Crop}, 50, 40, 40, 40}, // a smaller square, not upscaled
		{Box{96, 96, Crop}, 100, 20, 20, 20},
		{Box{32, 32, Crop}, 32, 32, 32, 32},
		{Box{64, 32, Crop}, 40, 100, 40, 20},
		{Box{64, 32, Crop}, 1, 1, 1, 1},
	}
	for _, c := range cases {
		if w, h := c.box.Size(c.w, c.h); w != c.wantW || h != c.wantH {
			t.Errorf("%v of %dx%d: %dx%d, want %dx%d", c.box, c.w, c.h, w, h, c.wantW, c.wantH)
		}
	}
}

func TestChoose(t *testing.T) {
	original := Choice{Original: true}
	box := func(w, h int, m string) Choice { return Choice{Box: Box{w, h, m}} }
	cases := []struct {
		name       string
		w, h       int
		reqW, reqH int
		method     string
		want       Choice
	}{
		{"small crop of a photo", 4000, 3000, 32, 32, Crop, box(32, 32, Crop)},
		{"between the crops", 4000, 3000, 40, 40, Crop, box(96, 96, Crop)},
		{"a crop of another shape", 4000, 3000, 64, 32, Crop, box(96, 96, Crop)},
		{"a crop larger than every crop box", 4000, 3000, 200, 200, Crop, original},
		{"scale to the first box", 4000, 3000, 100, 100, Scale, box(320, 240, Scale)},
		{"scale to exactly a box", 4000, 3000, 320, 240, Scale, box(320, 240, Scale)},
		{"scale just past a box", 4000, 3000, 321, 241, Scale, box(640, 480, Scale)},
		{"scale to the largest box", 4000, 3000, 800, 600, Scale, box(800, 600, Scale)},
		{"scale past every box", 4000, 3000, 1600, 1200, Scale, original},
		{"a panorama fits the first box by width", 4000, 1000, 320, 240, Scale, box(320, 240, Scale)},
		{"a tall image", 1000, 4000, 100, 300, Scale, box(640, 480, Scale)},
		{"an image smaller than the request", 40, 30, 96, 96, Crop, original},
		{"an image as large as the request", 96, 96, 96, 96, Crop, original},
		{"an image smaller than the request, scaled", 300, 200, 320, 240, Scale, original},
		{"a small image larger than the request", 50, 50, 40, 40, Crop, box(96, 96, Crop)},
		{"a small image, scaled", 500, 400, 100, 100, Scale, box(320, 240, Scale)},
		{"a small image the scale boxes all keep whole", 500, 400, 400, 400, Scale, box(640, 480, Scale)},
		{"absurd request", 4000, 3000, 10000, 10000, Scale, original},
		{"one pixel", 4000, 3000, 1, 1, Scale, box(320, 240, Scale)},
	}
	for _, c := range cases {
		if got := Choose(DefaultBoxes, c.w, c.h, c.reqW, c.reqH, c.method); got != c.want {
			t.Errorf("%s: %dx%d for %dx%d %s: got %+v, want %+v", c.name, c.w, c.h, c.reqW, c.reqH, c.method, got, c.want)
		}
	}
}

func testPNGBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
