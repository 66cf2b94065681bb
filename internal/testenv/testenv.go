// Package testenv locates what integration tests need outside the
// repository: the default model, llama.cpp's own example binaries and the
// shared datasets. Locally a missing piece skips the test with a message
// saying how to get it; under CI (CI=true) it fails the test instead, since
// .ci/run provides everything.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/matsteer/matsteer/models"
)

// RepoRoot is the repository root (found from this file's location).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// DefaultModel returns the cached default model's path.
func DefaultModel(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	p := models.Default().Path()
	if _, err := os.Stat(p); err != nil {
		missing(t, "default model not cached at %s; run `make model` to fetch it", p)
	}
	return p
}

// LlamaBin returns the path of a llama.cpp example or tool (e.g.
// "llama-completion") built by `make`.
func LlamaBin(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(), "third_party", "build", "bin", name)
	if _, err := os.Stat(p); err != nil {
		missing(t, "%s not built at %s; run `make build`", name, p)
	}
	return p
}

// DataDir returns the shared dataset directory ($MATSTEER_DATA or
// ../shared/data next to the repository), or skips.
func DataDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("MATSTEER_DATA")
	if d == "" {
		d = filepath.Join(RepoRoot(), "..", "shared", "data")
	}
	if _, err := os.Stat(d); err != nil {
		t.Skipf("shared datasets not found at %s (set MATSTEER_DATA); skipping", d)
	}
	return d
}

// Model returns the cached path of a known model other than the default
// (e.g. "gemma3-270m"); it skips when that model is not cached, also in CI,
// since CI fetches only the default model.
func Model(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	spec, err := models.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec.Path()); err != nil {
		t.Skipf("model %s not cached at %s; run `matsteer model pull %s` to include it", name, spec.Path(), name)
	}
	return spec.Path()
}
