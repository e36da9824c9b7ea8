package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"strconv"

	"golang.org/x/image/draw"

	// The decoders of the formats thumbnails are made of (and DecodeConfig reads).
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"

	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// maxConcurrentThumbnails bounds the images decoded at once (a decoded image of
// media_max_image_pixels takes over a hundred megabytes).
const maxConcurrentThumbnails = 2

// MaxThumbnailDimension bounds the width and height a thumbnail request may name.
const MaxThumbnailDimension = 10000

// jpegQuality is the quality of JPEG thumbnails (as Synapse).
const jpegQuality = 80

// thumbnailable reports whether the server decodes images of a content type (without
// parameters) to make thumbnails.
func thumbnailable(base string) bool {
	switch base {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return true
	}
	return false
}

// ThumbnailRequest is what a client asks of a thumbnail.
type ThumbnailRequest struct {
	Width, Height int
	Method        string // Crop or Scale
	// Animated asks for an animated thumbnail of an animated image.
	Animated bool
}

// Served is content to send: a blob with its type and when it was made.
type Served struct {
	SHA256      string
	ContentType string
	Size        int64
	ModifiedTS  int64 // unix ms
}

func errCannotThumbnail() error {
	return mxerr.Unknown("Cannot generate thumbnails for the requested content")
}

// Thumbnail answers a thumbnail request for the media an mxc:// URI names: a stored
// thumbnail, one made now (and stored), or the original image when that is what the spec
// asks for. Thumbnails are JPEG for JPEG and opaque WebP images, PNG otherwise; GIFs give
// their first frame unless an animated thumbnail is asked for, which is then the original
// (the server does not encode animations).
func (s *Service) Thumbnail(ctx context.Context, serverName, mediaID string, req ThumbnailRequest, o GetOptions) (Served, error) {
	m, err := s.Get(ctx, serverName, mediaID, o)
	if err != nil {
		return Served{}, err
	}
	base := baseType(m.ContentType)
	if !thumbnailable(base) || m.Width == 0 || m.Height == 0 {
		return Served{}, errCannotThumbnail()
	}
	if int64(m.Width)*int64(m.Height) > s.cfg.MaxImagePixels {
		return Served{}, mxerr.TooLarge("Content is too large to thumbnail")
	}
	original := Served{SHA256: m.SHA256, ContentType: base, Size: m.Size, ModifiedTS: m.UploadedTS}
	animatable := base == "image/gif" || base == "image/webp"
	if req.Animated && animatable {
		return original, nil
	}
	c := Choose(DefaultBoxes, m.Width, m.Height, req.Width, req.Height, req.Method)
	if c.Original {
		if !animatable {
			return original, nil
		}
		// The original may be animated, which was not asked for: a still of the first
		// frame at full size instead.
		c.Box = Box{m.Width, m.Height, Scale}
	}
	th, err := s.thumbnailFor(ctx, m, c.Box)
	if err != nil {
		return Served{}, err
	}
	return Served{SHA256: th.SHA256, ContentType: th.ContentType, Size: th.Size, ModifiedTS: m.UploadedTS}, nil
}

// thumbnailFor returns the media's thumbnail for box, making and storing it the first
// time: once, however many ask at the same moment.
func (s *Service) thumbnailFor(ctx context.Context, m storage.Media, box Box) (storage.Thumbnail, error) {
	th, err := s.store.Thumbnail(ctx, m.ID, box.Width, box.Height, box.Method)
	if err == nil {
		return th, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return th, mxerr.Internal(err)
	}
	key := m.ID + "/" + strconv.Itoa(box.Width) + "x" + strconv.Itoa(box.Height) + "/" + box.Method
	v, err, _ := s.thumbs.Do(key, func() (any, error) {
		// Not the caller's context: the others waiting for this thumbnail would share
		// its cancellation.
		return s.generate(context.WithoutCancel(ctx), m, box)
	})
	if err != nil {
		return storage.Thumbnail{}, err
	}
	return v.(storage.Thumbnail), nil
}

// generate makes, stores and records one thumbnail.
func (s *Service) generate(ctx context.Context, m storage.Media, box Box) (storage.Thumbnail, error) {
	select {
	case s.thumbSem <- struct{}{}:
		defer func() { <-s.thumbSem }()
	case <-ctx.Done():
		return storage.Thumbnail{}, ctx.Err()
	}
	// Another process may have made it meanwhile.
	if th, err := s.store.Thumbnail(ctx, m.ID, box.Width, box.Height, box.Method); err == nil {
		return th, nil
	}
	src, err := s.blobs.Open(ctx, m.SHA256)
	if err != nil {
		return storage.Thumbnail{}, mxerr.Internal(err)
	}
	encoded, contentType, w, h, err := RenderThumbnail(src, baseType(m.ContentType), m.Width, m.Height, s.cfg.MaxImagePixels, box)
	src.Close()
	if err != nil {
		s.log.Info("cannot make a thumbnail", "media", m.ID, "box", box, "err", err)
		return storage.Thumbnail{}, errCannotThumbnail()
	}
	sum := sha256.Sum256(encoded)
	th := storage.Thumbnail{MediaID: m.ID, BoxWidth: box.Width, BoxHeight: box.Height, Method: box.Method,
		Width: w, Height: h, ContentType: contentType, Size: int64(len(encoded)), SHA256: hex.EncodeToString(sum[:])}
	f, err := s.blobs.Temp()
	if err != nil {
		return th, mxerr.Internal(err)
	}
	if _, err := f.Write(encoded); err != nil {
		f.Close()
		os.Remove(f.Name())
		return th, mxerr.Internal(err)
	}
	if err := s.blobs.Put(ctx, th.SHA256, f); err != nil {
		return th, mxerr.Internal(err)
	}
	if err := s.store.Write(ctx, func(tx storage.Tx) error { return tx.PutThumbnail(ctx, th) }); err != nil {
		return th, mxerr.Internal(err)
	}
	return th, nil
}

// RenderThumbnail decodes an image of type base (w×h, as its header says) and returns
// its thumbnail for box, encoded, with the thumbnail's content type and size. The
// dimensions are checked against maxPixels again before anything is decoded, so a header
// that lies cannot make the decoder allocate more.
func RenderThumbnail(r io.ReadSeeker, base string, w, h int, maxPixels int64, box Box) ([]byte, string, int, int, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return nil, "", 0, 0, err
	}
	if cfg.Width != w || cfg.Height != h || int64(w)*int64(h) > maxPixels || "image/"+format != base {
		return nil, "", 0, 0, fmt.Errorf("image header changed: %s %dx%d", format, cfg.Width, cfg.Height)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, "", 0, 0, err
	}
	src, _, err := image.Decode(r) // a GIF's first frame
	if err != nil {
		return nil, "", 0, 0, err
	}
	tw, th := box.Size(w, h)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	scale(dst, src, sourceRect(src.Bounds(), box.Method, tw, th))

	var out bytes.Buffer
	contentType := "image/png"
	if base == "image/jpeg" || (base == "image/webp" && opaque(src)) {
		contentType = "image/jpeg"
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: jpegQuality})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&out, dst)
	}
	if err != nil {
		return nil, "", 0, 0, err
	}
	return out.Bytes(), contentType, tw, th, nil
}

// scale draws the part sr of src onto all of dst with Catmull-Rom, whose cost (and
// scratch memory) grows with the source area times the reduction: a large reduction first
// halves the image, 2×2 pixels into one, as often as it stays at least twice the target
// either way, so that the kernel never reduces by four or more.
func scale(dst *image.RGBA, src image.Image, sr image.Rectangle) {
	tw, th := dst.Bounds().Dx(), dst.Bounds().Dy()
	for sr.Dx() >= 4*tw && sr.Dy() >= 4*th {
		half := image.NewRGBA(image.Rect(0, 0, sr.Dx()/2, sr.Dy()/2))
		// At exactly half size, bilinear sampling averages each 2×2 block.
		draw.ApproxBiLinear.Scale(half, half.Bounds(), src, sr, draw.Src, nil)
		src, sr = half, half.Bounds()
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, sr, draw.Src, nil)
}

// sourceRect is the part of the image a thumbnail of tw×th shows: all of it when scaled,
// the centre in the thumbnail's aspect ratio when cropped.
func sourceRect(b image.Rectangle, method string, tw, th int) image.Rectangle {
	if method != Crop {
		return b
	}
	w, h := b.Dx(), b.Dy()
	cw, ch := w, h
	if int64(w)*int64(th) > int64(h)*int64(tw) {
		cw = max(int(int64(h)*int64(tw)/int64(th)), 1) // too wide: cut the sides
	} else {
		ch = max(int(int64(w)*int64(th)/int64(tw)), 1) // too tall: cut top and bottom
	}
	x0, y0 := b.Min.X+(w-cw)/2, b.Min.Y+(h-ch)/2
	return image.Rect(x0, y0, x0+cw, y0+ch)
}

func opaque(img image.Image) bool {
	o, ok := img.(interface{ Opaque() bool })
	return ok && o.Opaque()
}
