package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func remoteFor(url, path string, payload []byte) Remote {
	sum := sha256.Sum256(payload)
	return Remote{URL: url, Path: path, Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:])}
}

// onlyFile fails the test if dir holds anything but the named files.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestDownload(t *testing.T) {
	payload := bytes.Repeat([]byte("statement\n"), 5000) // 50 kB
	var hits int
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { hits++; w.Write(payload) })
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) { // same size, other bytes
		b := bytes.Clone(payload)
		b[100] ^= 1
		w.Write(b)
	})
	mux.HandleFunc("/truncated", func(w http.ResponseWriter, r *http.Request) {
		// Announces the full length, sends half and closes the connection.
		w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		w.Write(payload[:len(payload)/2])
		if hj, ok := w.(http.Hijacker); ok {
			w.(http.Flusher).Flush()
			c, _, _ := hj.Hijack()
			c.Close()
		}
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) { // no length, fewer bytes
		w.(http.Flusher).Flush()
		w.Write(payload[:1000])
	})
	mux.HandleFunc("/oversized", func(w http.ResponseWriter, r *http.Request) { // no length, endless
		w.(http.Flusher).Flush()
		for i := 0; i < 100; i++ {
			if _, err := w.Write(payload); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/announced-large", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(2*len(payload)))
		w.Write(append(bytes.Clone(payload), payload...))
	})
	release := make(chan struct{})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) { // some bytes, then nothing
		w.Write(payload[:100])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { // slow but steady: succeeds
		for off := 0; off < len(payload); off += len(payload) / 5 {
			time.Sleep(60 * time.Millisecond)
			w.Write(payload[off:min(off+len(payload)/5, len(payload))])
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)
	dir := t.TempDir()
	dst := filepath.Join(dir, "sub", "f.txt")
	f := &Fetcher{}
	ctx := context.Background()
	stall := 250 * time.Millisecond

	for _, c := range []struct{ path, want string }{
		{"/missing", "404"},
		{"/other", "checksum mismatch"},
		{"/truncated", "unexpected EOF"},
		{"/short", "truncated: got 1000"},
		{"/oversized", "larger than the pinned"},
		{"/announced-large", "announces"},
		{"/stall", "stalled"},
	} {
		t0 := time.Now()
		fetched, err := f.Download(ctx, remoteFor(srv.URL+c.path, dst, payload), stall)
		if err == nil || fetched || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was written") {
			t.Errorf("%s: fetched %v, error %v; want %q", c.path, fetched, err, c.want)
		}
		if c.path == "/stall" && (!errors.Is(err, ErrStalled) || time.Since(t0) > 5*time.Second) {
			t.Errorf("stall: %v after %s", err, time.Since(t0))
		}
		if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: a file was left at the destination: %v", c.path, err)
		}
		onlyFiles(t, filepath.Dir(dst)) // no temporary file either
	}

	// A slow download that keeps receiving is not abandoned.
	if fetched, err := f.Download(ctx, remoteFor(srv.URL+"/slow", dst, payload), stall); err != nil || !fetched {
		t.Fatalf("slow: %v %v", fetched, err)
	}
	os.Remove(dst)
	if fetched, err := f.Download(ctx, remoteFor(srv.URL+"/ok", dst, payload), stall); err != nil || !fetched {
		t.Fatalf("ok: %v %v", fetched, err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, payload) {
		t.Fatal("wrong content")
	}
	onlyFiles(t, filepath.Dir(dst), "f.txt")
	// Present and verified: not fetched again.
	if fetched, err := f.Download(ctx, remoteFor(srv.URL+"/ok", dst, payload), stall); err != nil || fetched || hits != 1 {
		t.Fatalf("cached: fetched %v, %v, %d requests", fetched, err, hits)
	}
	// A damaged file is replaced; a failed replacement keeps it as it was.
	os.WriteFile(dst, []byte("damaged"), 0o644)
	if _, err := f.Download(ctx, remoteFor(srv.URL+"/other", dst, payload), stall); err == nil {
		t.Fatal("checksum mismatch accepted")
	}
	if got, _ := os.ReadFile(dst); string(got) != "damaged" {
		t.Errorf("a failed download changed the existing file: %q", got)
	}
	if fetched, err := f.Download(ctx, remoteFor(srv.URL+"/ok", dst, payload), stall); err != nil || !fetched {
		t.Fatalf("repair: %v %v", fetched, err)
	}
	// Cancelled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	os.Remove(dst)
	if _, err := f.Download(cctx, remoteFor(srv.URL+"/ok", dst, payload), stall); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// No pin, no download.
	if _, err := f.Download(ctx, Remote{URL: srv.URL + "/ok", Path: dst}, stall); err == nil {
		t.Error("unpinned download accepted")
	}
}
