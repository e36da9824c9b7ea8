// Package media is the content repository: uploads (direct, and asynchronous through a
// media ID made first), downloads, thumbnails and URL previews of this server's media. The
// content lives in a Blobs store under its SHA-256 (identical uploads share one blob); what
// is known about each media ID lives in the database.
package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/singleflight"

	"porthole/internal/mxerr"
	"porthole/internal/ratelimit"
	"porthole/internal/storage"
)

// Config holds the limits of the repository.
type Config struct {
	ServerName     string
	MaxUploadSize  int64
	MaxImagePixels int64
	// Quota is the bytes a user may upload per QuotaPeriod (0: no quota).
	Quota       int64
	QuotaPeriod time.Duration
	// MaxPending media IDs from Create may wait for content per user, for PendingExpiry.
	MaxPending    int
	PendingExpiry time.Duration
	// UploadRate limits uploads and Create per user (nil: no limit).
	UploadRate *ratelimit.Limiter
	// LegacyCutoff (unix ms): media created before it are served by the unauthenticated
	// endpoints too.
	LegacyCutoff int64
	// URLPreview turns URL previews on.
	URLPreview bool
}

// Limits of requests, whatever the configuration.
const (
	// MaxWait is the longest a download waits for pending content (timeout_ms is cut to
	// it); DefaultWait is the wait when the client names none (the spec's 20 s).
	MaxWait     = 60 * time.Second
	DefaultWait = 20 * time.Second
	// maxFilenameBytes bounds an upload's filename.
	maxFilenameBytes = 1024
	// maxContentTypeBytes bounds an upload's Content-Type.
	maxContentTypeBytes = 255
	// pollInterval is how often a waiting download looks for content uploaded through
	// another process sharing the database (uploads here wake it at once).
	pollInterval = time.Second
)

// Service is the content repository.
type Service struct {
	store storage.Store
	blobs Blobs
	cfg   Config
	log   *slog.Logger
	now   func() time.Time

	// uploaded is closed (and replaced) when an upload commits, waking waiting downloads.
	uploadedMu sync.Mutex
	uploaded   chan struct{}

	// Thumbnails: one generation per media and size box at a time, and few at once (a
	// decoded image can take hundreds of megabytes).
	thumbs   singleflight.Group
	thumbSem chan struct{}

	preview *previewer // nil when URL previews are off

	stop chan struct{}
	done chan struct{}
}

// New returns the repository; Close stops its background sweep.
func New(store storage.Store, blobs Blobs, cfg Config, log *slog.Logger) *Service {
	s := &Service{store: store, blobs: blobs, cfg: cfg, log: log, now: time.Now,
		uploaded: make(chan struct{}), thumbSem: make(chan struct{}, maxConcurrentThumbnails),
		stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.URLPreview {
		s.preview = newPreviewer(s, false)
	}
	go s.sweep()
	return s
}

// SetClock replaces the clock (tests move time forward to expire media IDs).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Close stops the background sweep.
func (s *Service) Close() {
	close(s.stop)
	<-s.done
}

// sweep deletes expired pending media IDs every hour (they are refused from the moment
// they expire; this only frees their rows).
func (s *Service) sweep() {
	defer close(s.done)
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.DeleteExpired(context.Background())
		}
	}
}

// DeleteExpired deletes the pending media IDs that have expired.
func (s *Service) DeleteExpired(ctx context.Context) (int64, error) {
	var n int64
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		var err error
		n, err = tx.DeleteExpiredMedia(ctx, s.nowMS()-s.cfg.PendingExpiry.Milliseconds())
		return err
	})
	if err != nil {
		s.log.Warn("deleting expired media IDs", "err", err)
	} else if n > 0 {
		s.log.Info("deleted expired media IDs", "count", n)
	}
	return n, err
}

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

// UploadSize is m.upload.size.
func (s *Service) UploadSize() int64 { return s.cfg.MaxUploadSize }

func (s *Service) limitRate(userID string) error {
	if ok, wait := s.cfg.UploadRate.Allow(userID); !ok {
		return mxerr.LimitExceeded(wait.Milliseconds() + 1)
	}
	return nil
}

// Create makes a media ID for content to be uploaded later (POST /_matrix/media/v1/create)
// and returns its mxc:// URI and when it expires unused (unix ms).
func (s *Service) Create(ctx context.Context, userID string) (string, int64, error) {
	if err := s.limitRate(userID); err != nil {
		return "", 0, err
	}
	now := s.nowMS()
	expiry := s.cfg.PendingExpiry.Milliseconds()
	m := storage.Media{ID: newMediaID(), UserID: userID, CreatedTS: now}
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		n, oldest, err := tx.PendingMedia(ctx, userID, now-expiry)
		if err != nil {
			return err
		}
		if n >= s.cfg.MaxPending {
			return mxerr.LimitExceeded(max(oldest+expiry-now, 1))
		}
		return tx.CreateMedia(ctx, m)
	})
	if err != nil {
		return "", 0, err
	}
	return MXC(s.cfg.ServerName, m.ID), now + expiry, nil
}

// Upload is one upload: of new content (MediaID empty), or of the content of a media ID
// made by Create (ServerName and MediaID from its mxc:// URI).
type Upload struct {
	UserID      string
	ServerName  string
	MediaID     string
	ContentType string // as the client sent it; empty means application/octet-stream
	Filename    string
	// Length is the declared length (Content-Length), or -1 when the body is chunked.
	Length int64
	Body   io.Reader
}

// Upload stores content and returns its mxc:// URI. The body streams to a temporary file
// while it is hashed and counted, and is cut off once past the size limit or the quota;
// nothing is stored when the upload is refused.
func (s *Service) Upload(ctx context.Context, u Upload) (string, error) {
	if err := s.limitRate(u.UserID); err != nil {
		return "", err
	}
	contentType, err := normalizeContentType(u.ContentType)
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(u.Filename) || len(u.Filename) > maxFilenameBytes {
		return "", mxerr.InvalidParam(fmt.Sprintf("filename must be valid UTF-8 of at most %d bytes", maxFilenameBytes))
	}
	if u.Length > s.cfg.MaxUploadSize {
		return "", s.tooLarge()
	}
	if u.Length == 0 {
		return "", errEmpty()
	}
	if u.MediaID != "" {
		if err := s.checkPending(ctx, u); err != nil {
			return "", err
		}
	}
	remaining, err := s.quotaLeft(ctx, u.UserID)
	if err != nil {
		return "", err
	}
	if u.Length > remaining {
		return "", errQuota()
	}

	st, err := s.stage(u.Body, min(s.cfg.MaxUploadSize, remaining))
	if err != nil {
		return "", err
	}
	defer st.discard()
	switch {
	case st.size > s.cfg.MaxUploadSize:
		return "", s.tooLarge()
	case st.size > remaining:
		return "", errQuota()
	case st.size == 0:
		return "", errEmpty()
	}
	m := storage.Media{ID: u.MediaID, UserID: u.UserID, ContentType: contentType, UploadName: u.Filename, Size: st.size, SHA256: st.hash}
	if m.Width, m.Height, err = checkContent(contentType, st); err != nil {
		return "", err
	}
	// Check the quota again: other uploads of the user may have finished meanwhile.
	if remaining, err = s.quotaLeft(ctx, u.UserID); err != nil {
		return "", err
	} else if st.size > remaining {
		return "", errQuota()
	}
	if err := s.blobs.Put(ctx, st.hash, st.file); err != nil {
		return "", mxerr.Internal(err)
	}
	st.file = nil
	if err := s.record(ctx, &m); err != nil {
		return "", err
	}
	return MXC(s.cfg.ServerName, m.ID), nil
}

func (s *Service) tooLarge() error {
	return mxerr.TooLarge(fmt.Sprintf("Cannot upload files larger than %d bytes", s.cfg.MaxUploadSize))
}

func errEmpty() error { return mxerr.InvalidParam("The upload is empty") }

func errQuota() error {
	return mxerr.Forbidden("Media upload quota exceeded: try again later")
}

// quotaLeft is what the user may still upload in the quota's period.
func (s *Service) quotaLeft(ctx context.Context, userID string) (int64, error) {
	if s.cfg.Quota == 0 {
		return s.cfg.MaxUploadSize, nil
	}
	used, err := s.store.MediaUploadedSince(ctx, userID, s.nowMS()-s.cfg.QuotaPeriod.Milliseconds())
	if err != nil {
		return 0, mxerr.Internal(err)
	}
	return max(s.cfg.Quota-used, 0), nil
}

// checkPending checks that an asynchronous upload names a media ID of this server, made by
// the uploader, unexpired and without content.
func (s *Service) checkPending(ctx context.Context, u Upload) error {
	if u.ServerName != s.cfg.ServerName || !ValidMediaID(u.MediaID) {
		return mxerr.NotFound("Unknown media ID")
	}
	m, err := s.store.Media(ctx, u.MediaID)
	if errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Unknown media ID")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	switch {
	case m.UserID != u.UserID:
		return mxerr.Forbidden("Only the creator of the media ID can upload to it")
	case !m.Pending():
		return mxerr.CannotOverwriteMedia()
	case s.expired(m):
		return mxerr.NotFound("Media ID has expired")
	}
	return nil
}

func (s *Service) expired(m storage.Media) bool {
	return m.Pending() && m.CreatedTS < s.nowMS()-s.cfg.PendingExpiry.Milliseconds()
}

// record stores the media row of an upload and wakes the downloads waiting for it.
func (s *Service) record(ctx context.Context, m *storage.Media) error {
	m.UploadedTS = max(s.nowMS(), 1)
	async := m.ID != ""
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		if async {
			return tx.CompleteMedia(ctx, *m)
		}
		m.ID, m.CreatedTS = newMediaID(), m.UploadedTS
		return tx.CreateMedia(ctx, *m)
	})
	switch {
	case async && errors.Is(err, storage.ErrConflict):
		return mxerr.CannotOverwriteMedia()
	case async && errors.Is(err, storage.ErrNotFound):
		return mxerr.NotFound("Unknown media ID")
	case err != nil:
		return mxerr.Internal(err)
	}
	s.uploadedMu.Lock()
	close(s.uploaded)
	s.uploaded = make(chan struct{})
	s.uploadedMu.Unlock()
	return nil
}

// normalizeContentType checks a declared Content-Type and returns it in canonical form.
func normalizeContentType(ct string) (string, error) {
	if strings.TrimSpace(ct) == "" {
		return "application/octet-stream", nil
	}
	if len(ct) > maxContentTypeBytes {
		return "", mxerr.InvalidParam("Content-Type is too long")
	}
	base, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(base, "/") {
		return "", mxerr.InvalidParam("Content-Type is not a media type")
	}
	if base == "image/jpg" {
		base = "image/jpeg"
	}
	return mime.FormatMediaType(base, params), nil
}

// baseType is a content type without its parameters.
func baseType(ct string) string {
	base, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(base))
}

// staged is an upload written to a temporary file.
type staged struct {
	file *os.File
	size int64
	hash string
	head []byte // the first bytes, for sniffing
}

func (st *staged) discard() {
	if st.file != nil {
		st.file.Close()
		os.Remove(st.file.Name())
	}
}

// sniffLen is what http.DetectContentType looks at.
const sniffLen = 512

// stage copies at most limit+1 bytes of body to a temporary file (one past the limit
// tells an upload that is too large), hashing them on the way.
func (s *Service) stage(body io.Reader, limit int64) (*staged, error) {
	f, err := s.blobs.Temp()
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	st := &staged{file: f}
	h := sha256.New()
	head := &headBuffer{}
	n, err := io.Copy(io.MultiWriter(f, h, head), io.LimitReader(body, limit+1))
	st.size, st.head = n, head.b
	if err != nil {
		st.discard()
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, s.tooLarge()
		}
		return nil, mxerr.Unknown("Could not read the upload").With(err)
	}
	st.hash = hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// headBuffer keeps the first sniffLen bytes written to it.
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := sniffLen - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// checkContent refuses an upload that claims to be an image of a kind the server decodes
// (JPEG, PNG, GIF, WebP) but is not one, and returns an image's dimensions (read from its
// header only).
func checkContent(contentType string, st *staged) (int, int, error) {
	base := baseType(contentType)
	if !thumbnailable(base) {
		return 0, 0, nil
	}
	if sniffed := http.DetectContentType(st.head); sniffed != base {
		return 0, 0, mxerr.Forbidden(fmt.Sprintf("The content is not %s", base))
	}
	if _, err := st.file.Seek(0, io.SeekStart); err != nil {
		return 0, 0, mxerr.Internal(err)
	}
	cfg, _, err := image.DecodeConfig(st.file)
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, mxerr.Forbidden(fmt.Sprintf("The content is not a readable %s image", base))
	}
	return cfg.Width, cfg.Height, nil
}

// GetOptions says how a download asks for media.
type GetOptions struct {
	// Wait is how long to wait for content not yet uploaded.
	Wait time.Duration
	// Legacy: the request came through an unauthenticated endpoint.
	Legacy bool
	// AllowRemote false: the client asked not to fetch from another server.
	AllowRemote bool
}

// Get returns the media item that an mxc:// URI names, waiting up to o.Wait for content
// not yet uploaded (504 M_NOT_YET_UPLOADED then).
func (s *Service) Get(ctx context.Context, serverName, mediaID string, o GetOptions) (storage.Media, error) {
	if !ValidServerName(serverName) {
		return storage.Media{}, mxerr.InvalidParam("Invalid server name")
	}
	if serverName != s.cfg.ServerName {
		if !o.AllowRemote {
			return storage.Media{}, mxerr.NotFound("Not found")
		}
		// Remote media needs federation, which is not built: answered as Synapse answers
		// when it cannot reach the media's server.
		return storage.Media{}, mxerr.BadGateway("Failed to fetch remote media")
	}
	if !ValidMediaID(mediaID) {
		return storage.Media{}, mxerr.NotFound("Not found")
	}
	deadline := time.Now().Add(min(o.Wait, MaxWait))
	for {
		// Register before reading, so that an upload committing in between wakes us.
		s.uploadedMu.Lock()
		woken := s.uploaded
		s.uploadedMu.Unlock()
		m, err := s.store.Media(ctx, mediaID)
		if errors.Is(err, storage.ErrNotFound) {
			return m, mxerr.NotFound("Not found")
		} else if err != nil {
			return m, mxerr.Internal(err)
		}
		if o.Legacy && m.CreatedTS >= s.cfg.LegacyCutoff {
			return storage.Media{}, mxerr.NotFound("Not found")
		}
		if !m.Pending() {
			return m, nil
		}
		if s.expired(m) {
			return storage.Media{}, mxerr.NotFound("Not found")
		}
		left := time.Until(deadline)
		if left <= 0 {
			return storage.Media{}, mxerr.NotYetUploaded()
		}
		t := time.NewTimer(min(left, pollInterval))
		select {
		case <-woken:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return storage.Media{}, ctx.Err()
		}
		t.Stop()
	}
}

// Open reads the content of a media item or thumbnail (the blob named sha).
func (s *Service) Open(ctx context.Context, sha string) (io.ReadSeekCloser, error) {
	r, err := s.blobs.Open(ctx, sha)
	if err != nil {
		return nil, mxerr.Internal(fmt.Errorf("media blob %s: %w", sha, err))
	}
	return r, nil
}
