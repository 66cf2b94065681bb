package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/progress"
)

// Remote is one file to download and verify: its URL, where it goes, and
// its pinned size and SHA-256.
type Remote struct {
	URL    string
	Path   string // destination
	Size   int64  // exact size in bytes; must be > 0
	SHA256 string // lower-case hex
}

// DefaultStallTimeout is how long a download may go without receiving a
// byte before it is abandoned.
const DefaultStallTimeout = time.Minute

// ErrStalled is returned (wrapped) for a download that received nothing for
// the stall timeout.
var ErrStalled = errors.New("download stalled")

// ErrUnreachable is returned (wrapped) when a download's request got no
// response at all (no such host, connection refused, ...).
var ErrUnreachable = errors.New("server not reachable")

// VerifyFile reports whether path holds exactly size bytes with the given
// SHA-256 (hex). A missing file gives false and an error satisfying
// errors.Is(err, os.ErrNotExist).
func VerifyFile(path string, size int64, sum string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if size > 0 && st.Size() != size {
		return false, fmt.Errorf("size %d, want %d", st.Size(), size)
	}
	got, err := FileSHA256(path)
	if err != nil {
		return false, err
	}
	if got != sum {
		return false, fmt.Errorf("sha256 %s, want %s", got, sum)
	}
	return true, nil
}

// Download makes sure r.Path holds the pinned file: a file already there
// that matches size and checksum is kept (fetched reports false);
// otherwise r.URL is fetched into a temporary file beside r.Path, checked
// (HTTP 200, no more and no fewer than r.Size bytes, the SHA-256) and
// renamed into place (fetched true). Any failure (an HTTP error, a
// truncated or oversized body, a checksum mismatch, a download that
// receives nothing for the stall timeout, ctx cancelled) leaves r.Path as
// it was and no temporary file. stall ≤ 0 means DefaultStallTimeout.
func (f *Fetcher) Download(ctx context.Context, r Remote, stall time.Duration) (fetched bool, err error) {
	if r.Size <= 0 || len(r.SHA256) != 64 {
		return false, fmt.Errorf("download %s: no pinned size and sha256", r.URL)
	}
	if ok, err := VerifyFile(r.Path, r.Size, r.SHA256); ok {
		return false, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.logf("%s does not match its pin (%v); fetching it again", r.Path, err)
	}
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return false, fmt.Errorf("download %s: %w", r.URL, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(stall, func() { cancel(fmt.Errorf("%w: nothing received for %s", ErrStalled, stall)) })
	defer watchdog.Stop()
	fail := func(err error) (bool, error) {
		if c := context.Cause(ctx); c != nil && errors.Is(c, ErrStalled) {
			err = c
		}
		return false, fmt.Errorf("download %s: %w (nothing was written)", r.URL, err)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return fail(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		// The *url.Error repeats the URL; keep its cause, marked as a
		// failure to reach the server.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, ue.Err)
		}
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("HTTP %s", resp.Status))
	}
	if resp.ContentLength > r.Size {
		return fail(fmt.Errorf("the server announces %d bytes, the pinned file has %d", resp.ContentLength, r.Size))
	}
	out, err := safefile.Create(r.Path)
	if err != nil {
		return fail(err)
	}
	defer out.Abort()
	var bar *progress.Bar
	if f.Progress != nil {
		bar = progress.New(f.Progress, (r.Size+1023)>>10, "download "+filepath.Base(r.Path), "KiB")
	}
	h := sha256.New()
	var n int64
	body := io.LimitReader(&stallReader{r: resp.Body, watchdog: watchdog, stall: stall}, r.Size+1)
	if _, err := io.Copy(io.MultiWriter(out, h, kibCounter{bar, &n}), body); err != nil {
		return fail(err)
	}
	if bar != nil {
		bar.Add((n+1023)>>10 - n>>10)
		bar.Finish()
	}
	switch {
	case n > r.Size:
		return fail(fmt.Errorf("the body is larger than the pinned %d bytes", r.Size))
	case n < r.Size:
		return fail(fmt.Errorf("truncated: got %d of %d bytes", n, r.Size))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 {
		return fail(fmt.Errorf("checksum mismatch: got sha256 %s, want %s", got, r.SHA256))
	}
	if err := out.Commit(); err != nil {
		return fail(err)
	}
	return true, nil
}

// stallReader re-arms the stall watchdog whenever bytes arrive.
type stallReader struct {
	r        io.Reader
	watchdog *time.Timer
	stall    time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.watchdog.Reset(s.stall)
	}
	return n, err
}
