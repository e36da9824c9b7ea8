package media

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// TestRenderThumbnailContent checks what a thumbnail shows: a crop keeps the centre, a
// scale all of it, through the halving steps of a large reduction too.
func TestRenderThumbnailContent(t *testing.T) {
	// Left half red, right half blue, with a green band across the middle third.
	w, h := 1200, 900
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{255, 0, 0, 255}
			if x >= w/2 {
				c = color.NRGBA{0, 0, 255, 255}
			}
			if y >= h/3 && y < 2*h/3 {
				c = color.NRGBA{0, 255, 0, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	near := func(c color.Color, r, g, bl uint8) bool {
		cr, cg, cb, _ := c.RGBA()
		d := func(a uint32, b uint8) bool { x := int(a>>8) - int(b); return x > -40 && x < 40 }
		return d(cr, r) && d(cg, g) && d(cb, bl)
	}
	for _, c := range []struct {
		box                    Box
		wantW, wantH           int
		topLeft, mid, topRight [3]uint8
	}{
		{Box{32, 32, Crop}, 32, 32, [3]uint8{255, 0, 0}, [3]uint8{0, 255, 0}, [3]uint8{0, 0, 255}},
		{Box{800, 600, Scale}, 800, 600, [3]uint8{255, 0, 0}, [3]uint8{0, 255, 0}, [3]uint8{0, 0, 255}},
		{Box{100, 10, Crop}, 100, 10, [3]uint8{0, 255, 0}, [3]uint8{0, 255, 0}, [3]uint8{0, 255, 0}}, // the middle band only
	} {
		out, ct, tw, th, err := RenderThumbnail(bytes.NewReader(b.Bytes()), "image/png", w, h, 1<<24, c.box)
		if err != nil || ct != "image/png" || tw != c.wantW || th != c.wantH {
			t.Fatalf("%v: %s %dx%d %v", c.box, ct, tw, th, err)
		}
		th2, err := png.Decode(bytes.NewReader(out))
		if err != nil || th2.Bounds().Dx() != tw || th2.Bounds().Dy() != th {
			t.Fatalf("%v: decoded %v %v", c.box, th2.Bounds(), err)
		}
		if !near(th2.At(1, 1), c.topLeft[0], c.topLeft[1], c.topLeft[2]) || !near(th2.At(tw/2, th/2), c.mid[0], c.mid[1], c.mid[2]) ||
			!near(th2.At(tw-2, 1), c.topRight[0], c.topRight[1], c.topRight[2]) {
			t.Errorf("%v: corners %v %v %v", c.box, th2.At(1, 1), th2.At(tw/2, th/2), th2.At(tw-2, 1))
		}
	}
	// A header that does not match what was recorded at upload is refused.
	if _, _, _, _, err := RenderThumbnail(bytes.NewReader(b.Bytes()), "image/png", w+1, h, 1<<24, DefaultBoxes[0]); err == nil {
		t.Fatal("a changed header was accepted")
	}
	if _, _, _, _, err := RenderThumbnail(bytes.NewReader(b.Bytes()), "image/png", w, h, int64(w*h-1), DefaultBoxes[0]); err == nil {
		t.Fatal("an image over the pixel limit was decoded")
	}
}
