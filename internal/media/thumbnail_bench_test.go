package media

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"
)

// photo is a w×h test picture: gradients with noise, so that encoders and decoders work
// as on a photograph rather than on flat colour.
func photo(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := uint8(r.IntN(24))
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*200/w) + n, uint8(y*200/h) + n, 100 + n, 255})
		}
	}
	return img
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRenderThumbnail makes one thumbnail (decode, scale, encode) per iteration, for
// each input format and size and for the smallest crop and the largest scaled box.
func BenchmarkRenderThumbnail(b *testing.B) {
	type input struct {
		name, base string
		w, h       int
		data       []byte
	}
	var inputs []input
	for _, sz := range [][2]int{{1000, 750}, {4000, 3000}} {
		img := photo(sz[0], sz[1])
		var j, p bytes.Buffer
		jpeg.Encode(&j, img, &jpeg.Options{Quality: 85})
		png.Encode(&p, img)
		inputs = append(inputs,
			input{fmt.Sprintf("jpeg-%dx%d", sz[0], sz[1]), "image/jpeg", sz[0], sz[1], j.Bytes()},
			input{fmt.Sprintf("png-%dx%d", sz[0], sz[1]), "image/png", sz[0], sz[1], p.Bytes()})
	}
	{
		src := photo(1000, 750)
		pal := image.NewPaletted(src.Bounds(), palette.Plan9)
		draw.Draw(pal, pal.Bounds(), src, image.Point{}, draw.Src)
		var g bytes.Buffer
		gif.EncodeAll(&g, &gif.GIF{Image: []*image.Paletted{pal, pal}, Delay: []int{10, 10}})
		inputs = append(inputs, input{"gif-1000x750-2frames", "image/gif", 1000, 750, g.Bytes()})
	}
	webp, err := os.ReadFile("testdata/photo-1600x1200.webp")
	if err != nil {
		b.Fatal(err)
	}
	inputs = append(inputs, input{"webp-1600x1200", "image/webp", 1600, 1200, webp})

	for _, in := range inputs {
		for _, box := range []Box{DefaultBoxes[0], DefaultBoxes[len(DefaultBoxes)-1]} {
			b.Run(fmt.Sprintf("%s/%dx%d-%s", in.name, box.Width, box.Height, box.Method), func(b *testing.B) {
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					if _, _, _, _, err := RenderThumbnail(bytes.NewReader(in.data), in.base, in.w, in.h, 32<<20, box); err != nil {
						b.Fatal(err)
					}
				}
				// CPU time (the process's, GC included) does not grow when the machine is
				// busy with other work, as wall time does.
				b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
			})
		}
	}
}
