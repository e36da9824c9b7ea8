package storage

import "context"

// Media is a local media item of the content repository. Its content is the blob named
// SHA256 in the media store.
type Media struct {
	ID        string
	UserID    string
	CreatedTS int64 // unix ms: when the media ID was made
	// UploadedTS is when the content arrived (unix ms); 0 while the ID is pending (made by
	// POST /create, content not yet uploaded).
	UploadedTS  int64
	ContentType string
	UploadName  string
	Size        int64
	SHA256      string
	// Width and Height are an image's dimensions (0 for other content).
	Width, Height int
}

// Pending reports whether the media ID still waits for its content.
func (m Media) Pending() bool { return m.UploadedTS == 0 }

// Thumbnail is a stored thumbnail of a media item for one size box and method.
type Thumbnail struct {
	MediaID             string
	BoxWidth, BoxHeight int
	Method              string // crop | scale
	Width, Height       int
	ContentType         string
	Size                int64
	SHA256              string
}

// MediaReader is the read side of the content repository.
type MediaReader interface {
	Media(ctx context.Context, mediaID string) (Media, error)
	// MediaUploadedSince sums the sizes of the user's uploads at or after since (unix ms).
	MediaUploadedSince(ctx context.Context, userID string, since int64) (int64, error)
	// PendingMedia counts the user's pending media IDs created at or after since, and
	// returns the creation time of the oldest of them (0 when there is none).
	PendingMedia(ctx context.Context, userID string, since int64) (count int, oldest int64, err error)
	Thumbnail(ctx context.Context, mediaID string, boxWidth, boxHeight int, method string) (Thumbnail, error)
}

// MediaTx is the write side of the content repository.
type MediaTx interface {
	// CreateMedia inserts a media item (pending when UploadedTS is 0); ErrConflict when
	// the ID exists.
	CreateMedia(ctx context.Context, m Media) error
	// CompleteMedia gives a pending media ID its content (m.ID names it; the upload
	// fields are set from m). ErrNotFound when the ID does not exist, ErrConflict when it
	// already has content.
	CompleteMedia(ctx context.Context, m Media) error
	// PutThumbnail records a thumbnail; one already recorded for the box is kept.
	PutThumbnail(ctx context.Context, t Thumbnail) error
	// DeleteExpiredMedia deletes the pending media IDs created before before (unix ms).
	DeleteExpiredMedia(ctx context.Context, before int64) (int64, error)
}
