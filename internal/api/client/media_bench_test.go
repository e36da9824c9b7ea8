package client_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"syscall"
	"testing"
	"time"

	"porthole/internal/hstest"
)

// benchFileSize is the file of the media throughput benchmarks: 10 MiB.
const benchFileSize = 10 << 20

// BenchmarkMediaUpload10MB uploads a 10 MiB file per iteration over real HTTP (loopback,
// SQLite); each file differs, so each is hashed, written and renamed, not deduplicated.
// MB/s is the upload throughput; B/op counts client and server together, and stays far
// below the file's size because neither side holds the file in memory.
func BenchmarkMediaUpload10MB(b *testing.B) {
	s := hstest.New(b)
	alice := s.Register(b, "alice")
	body := make([]byte, benchFileSize)
	rng := rand.NewChaCha8([32]byte{})
	rng.Read(body)
	client := &http.Client{}
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		binary.LittleEndian.PutUint64(body, uint64(i))
		req, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("upload: %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// cpuTime is the process's CPU time (client and server together here), which does not
// grow when the machine is busy with other work, as wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMediaDownload10MB downloads a 10 MiB file per iteration over real HTTP from
// the authenticated endpoint, reading it into nothing.
func BenchmarkMediaDownload10MB(b *testing.B) {
	s := hstest.New(b)
	alice := s.Register(b, "alice")
	body := make([]byte, benchFileSize)
	rand.NewChaCha8([32]byte{1}).Read(body)
	ref := mustUpload(b, alice, "application/octet-stream", "big.bin", body)
	client := &http.Client{}
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		req, _ := http.NewRequest("GET", s.URL+"/_matrix/client/v1/media/download/"+ref, nil)
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != benchFileSize {
			b.Fatalf("download: %d, %d bytes", resp.StatusCode, n)
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}
