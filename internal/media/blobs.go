package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Blobs keeps content by key: the SHA-256 of the content in lower-case hex, so a blob is
// written once and never changes. New content is first written to a local file made by
// Temp (hashed as it is written), then handed over with Put. The disk store below is the
// default; a store for an S3-compatible service would upload in Put and read ranges in
// Open.
type Blobs interface {
	// Temp creates a file for new content.
	Temp() (*os.File, error)
	// Put stores f (a file from Temp, written and positioned anywhere) as key, and takes
	// it over: f is closed and its path removed, whatever the outcome. Content already
	// stored under key is kept (it is the same bytes).
	Put(ctx context.Context, key string, f *os.File) error
	// Open reads a blob; fs.ErrNotExist when there is none.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, error)
	// Delete removes a blob (nothing when it does not exist).
	Delete(ctx context.Context, key string) error
}

// DiskBlobs stores blobs as files under a directory: key "abcdef…" is ab/cd/abcdef…, and
// Temp files live in tmp/ on the same file system, so Put is a rename.
type DiskBlobs struct {
	dir string
}

// NewDiskBlobs opens (creating) a disk store and removes temporary files a crash left
// behind (older than a day, so that another process sharing the directory keeps its own).
func NewDiskBlobs(dir string) (*DiskBlobs, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	d := &DiskBlobs{dir: dir}
	entries, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	return d, nil
}

func (d *DiskBlobs) path(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("media store: invalid key %q", key)
	}
	return filepath.Join(d.dir, key[0:2], key[2:4], key), nil
}

// validKey accepts lower-case hex of a SHA-256, the only names a blob has (so that no key
// can name a path outside the store).
func validKey(key string) bool {
	if len(key) != 64 {
		return false
	}
	return strings.Trim(key, "0123456789abcdef") == ""
}

func (d *DiskBlobs) Temp() (*os.File, error) {
	return os.CreateTemp(filepath.Join(d.dir, "tmp"), "up-*")
}

func (d *DiskBlobs) Put(ctx context.Context, key string, f *os.File) error {
	defer os.Remove(f.Name())
	dst, err := d.path(key)
	if err != nil {
		f.Close()
		return err
	}
	// The content must be on disk before its name is: a crash may leave a temporary
	// file, never a blob with the wrong bytes.
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		return nil // the same content is stored already
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	return nil
}

func (d *DiskBlobs) Open(ctx context.Context, key string) (io.ReadSeekCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (d *DiskBlobs) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
