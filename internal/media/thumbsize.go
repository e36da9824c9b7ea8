package media

// Thumbnail sizing: pure functions of the image's and the request's dimensions.
//
// The server makes thumbnails in a few fixed size boxes (DefaultBoxes), each once per
// image, when first asked for. A request names the smallest size the client wants and a
// method; "scale" keeps the image's aspect ratio and fits it inside the box, "crop" fills
// the box and cuts off what sticks out. Nothing is ever upscaled: an image smaller than a
// box gives a thumbnail no larger than itself.

const (
	Crop  = "crop"
	Scale = "scale"
)

// Box is one thumbnail size the server makes.
type Box struct {
	Width, Height int
	Method        string
}

// DefaultBoxes are the sizes the spec and Synapse recommend.
var DefaultBoxes = []Box{
	{32, 32, Crop},
	{96, 96, Crop},
	{320, 240, Scale},
	{640, 480, Scale},
	{800, 600, Scale},
}

// Size is the size of the thumbnail the box makes of an image of w×h.
func (b Box) Size(w, h int) (int, int) {
	if b.Method == Crop {
		return cropSize(w, h, b.Width, b.Height)
	}
	return fitSize(w, h, b.Width, b.Height)
}

// fitSize is the largest size with the aspect ratio of w×h that fits in bw×bh, and at
// most w×h.
func fitSize(w, h, bw, bh int) (int, int) {
	if w <= bw && h <= bh {
		return w, h
	}
	// Compare bw/w with bh/h without dividing: the smaller ratio binds.
	if int64(bw)*int64(h) <= int64(bh)*int64(w) {
		return bw, max(int(int64(h)*int64(bw)/int64(w)), 1)
	}
	return max(int(int64(w)*int64(bh)/int64(h)), 1), bh
}

// cropSize is bw×bh, shrunk in its own aspect ratio until it fits in w×h (a crop never
// upscales: a small image gives a smaller crop of the same shape).
func cropSize(w, h, bw, bh int) (int, int) {
	if w >= bw && h >= bh {
		return bw, bh
	}
	if int64(w)*int64(bh) <= int64(h)*int64(bw) {
		return w, max(int(int64(bh)*int64(w)/int64(bw)), 1)
	}
	return max(int(int64(bw)*int64(h)/int64(bh)), 1), h
}

// Choice answers a thumbnail request: the original image, or the thumbnail of a box.
type Choice struct {
	Original bool
	Box      Box
}

// Choose answers a request for a thumbnail of at least reqW×reqH by method of an image of
// w×h, from boxes:
//   - an image no larger than the request is its own thumbnail (the spec: return the
//     original rather than thumbnail it);
//   - otherwise the smallest thumbnail of the method that is big enough: for scale, at
//     least the size the image fits the request at; for crop, at least the request's size
//     (as far as the image allows), closest in shape to it first;
//   - when no box is big enough, the original: the spec never allows a thumbnail smaller
//     than asked for when the image is larger.
func Choose(boxes []Box, w, h, reqW, reqH int, method string) Choice {
	if w <= reqW && h <= reqH {
		return Choice{Original: true}
	}
	var wantW, wantH int
	if method == Crop {
		wantW, wantH = cropSize(w, h, reqW, reqH)
	} else {
		wantW, wantH = fitSize(w, h, reqW, reqH)
	}
	best, found := Box{}, false
	var bestShape, bestArea int64
	for _, b := range boxes {
		if b.Method != method {
			continue
		}
		tw, th := b.Size(w, h)
		if tw < wantW || th < wantH {
			continue
		}
		var shape int64
		if method == Crop {
			// |tw/th - reqW/reqH|, scaled to integers.
			shape = abs(int64(tw)*int64(reqH) - int64(th)*int64(reqW))
		}
		area := int64(tw) * int64(th)
		if !found || shape < bestShape || (shape == bestShape && area < bestArea) {
			best, bestShape, bestArea, found = b, shape, area, true
		}
	}
	if !found {
		return Choice{Original: true}
	}
	return Choice{Box: best}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
