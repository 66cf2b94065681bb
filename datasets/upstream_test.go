package datasets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matsteer/matsteer/models"
)

// TestUpstreamPinsMatchSharedCopy: every pinned file is in the shared copy
// with the pinned size and checksum.
func TestUpstreamPinsMatchSharedCopy(t *testing.T) {
	root := sharedData(t, "")
	probs, err := VerifyData(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("%s: %v", p.Path, p.Err)
	}
	seen := map[string]bool{}
	for _, u := range Upstreams() {
		if u.Ref == "" || (u.Commit != "" && u.Commit != u.Ref) || (u.Commit == "" && u.Note == "") {
			t.Errorf("%s: commit %q, ref %q, note %q", u.Repo, u.Commit, u.Ref, u.Note)
		}
		for _, f := range u.Files {
			k := u.Dataset + "/" + f.Path
			if seen[k] {
				t.Errorf("%s listed twice", k)
			}
			seen[k] = true
		}
	}
	// Every data file of the shared copy is pinned (READMEs of the copy
	// itself aside).
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "README.md" && !seen[filepath.ToSlash(rel)] {
			t.Errorf("shared file %s is not pinned", rel)
		}
		return nil
	})
}

// mirror serves files by URL path (/OWNER/REPO/REF/PATH) and counts requests.
type mirror struct {
	files map[string][]byte
	hits  atomic.Int64
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.hits.Add(1)
	b, ok := m.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

func pin(path, upstream string, b []byte) UpstreamFile {
	s := sha256.Sum256(b)
	return UpstreamFile{Path: path, Upstream: upstream, Size: int64(len(b)), SHA256: hex.EncodeToString(s[:])}
}

func TestPullFixtures(t *testing.T) {
	good, bad, absent := []byte("{\"a\": 1}\n"), []byte("hate\\n- x\n"), []byte("license text\n")
	ref := strings.Repeat("ab", 20)
	ups := []Upstream{
		{Dataset: "toxigen", Repo: "o/r", Commit: ref, Ref: ref, Files: []UpstreamFile{
			pin("annotated/TOXIGEN_LICENSE", "data/TOXIGEN LICENSE", good), // a space in the upstream name
			pin("prompts/hate_x_1k.txt", "prompts/hate_x_1k.txt", bad),
			pin("LICENSE.txt", "LICENSE.txt", absent),
		}},
	}
	m := &mirror{files: map[string][]byte{
		"/o/r/" + ref + "/data/TOXIGEN LICENSE":  good,
		"/o/r/" + ref + "/prompts/hate_x_1k.txt": []byte("hate\\n- y\n"),
	}}
	srv := httptest.NewServer(m)
	defer srv.Close()
	dir := t.TempDir()
	var log strings.Builder
	res, err := pullUpstreams(context.Background(), dir, ups, PullOptions{Base: srv.URL, Log: &log, Stall: time.Second})
	if err == nil || !strings.Contains(err.Error(), "2 of 3 files failed") || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "404") ||
		!strings.Contains(err.Error(), "toxigen/prompts/hate_x_1k.txt") || !strings.Contains(err.Error(), "toxigen/LICENSE.txt") {
		t.Fatalf("error %v", err)
	}
	if res.Fetched != 1 || !strings.Contains(log.String(), "fetched toxigen/annotated/TOXIGEN_LICENSE (o/r@abababababab)") {
		t.Errorf("result %+v, log %q", res, log.String())
	}
	// Only the verified file is there; nothing half-written.
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if strings.Join(got, ",") != "toxigen/annotated/TOXIGEN_LICENSE" {
		t.Errorf("files after a failed pull: %v", got)
	}
	// Fixed upstream: the next pull fetches only what is missing.
	m.files["/o/r/"+ref+"/prompts/hate_x_1k.txt"] = bad
	m.files["/o/r/"+ref+"/LICENSE.txt"] = absent
	before := m.hits.Load()
	res, err = pullUpstreams(context.Background(), dir, ups, PullOptions{Base: srv.URL})
	if err != nil || res.Fetched != 2 || res.Present != 1 || m.hits.Load()-before != 2 {
		t.Fatalf("second pull: %+v %v, %d requests", res, err, m.hits.Load()-before)
	}
	if _, err := Pull(context.Background(), dir, PullOptions{Datasets: []string{"imagenet"}}); err == nil || !strings.Contains(err.Error(), "imagenet") {
		t.Errorf("unknown dataset: %v", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pullUpstreams(cctx, t.TempDir(), ups, PullOptions{Base: srv.URL}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// An unreachable server stops the pull at the first file.
	srv.Close()
	_, err = pullUpstreams(context.Background(), t.TempDir(), ups, PullOptions{Base: srv.URL})
	if !errors.Is(err, models.ErrUnreachable) || strings.Count(err.Error(), "not reachable:") != 1 || !strings.Contains(err.Error(), DataEnv) {
		t.Errorf("unreachable: %v", err)
	}
}

// TestPullSharedCopyFromMirror pulls every pinned file from a local server
// that serves the shared copy under the upstream URLs, then loads each task
// from the pulled directory.
func TestPullSharedCopyFromMirror(t *testing.T) {
	root := sharedData(t, "")
	m := &mirror{files: map[string][]byte{}}
	for _, u := range Upstreams() {
		for _, f := range u.Files {
			b, err := os.ReadFile(filepath.Join(root, u.Dataset, filepath.FromSlash(f.Path)))
			if err != nil {
				t.Fatal(err)
			}
			m.files["/"+u.Repo+"/"+u.Ref+"/"+f.Upstream] = b
		}
	}
	srv := httptest.NewServer(m)
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "data")
	res, err := Pull(context.Background(), dir, PullOptions{Base: srv.URL, Fetcher: &models.Fetcher{}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != len(m.files) {
		t.Errorf("fetched %d of %d files", res.Fetched, len(m.files))
	}
	if probs, _ := VerifyData(dir, nil); len(probs) != 0 {
		t.Errorf("problems after a pull: %+v", probs)
	}
	for _, task := range []string{TaskTruthfulQA, TaskBBQ} {
		if _, items, err := LoadItems(filepath.Join(dir, task), FormatAuto); err != nil || len(items) == 0 {
			t.Errorf("%s from the pulled copy: %d items, %v", task, len(items), err)
		}
	}
	if f, err := DetectFormat(filepath.Join(dir, TaskToxiGen)); err != nil || f != TaskToxiGen {
		t.Errorf("toxigen: %s %v", f, err)
	}
	srv.Close()
	res, err = Pull(context.Background(), dir, PullOptions{Base: srv.URL, Datasets: []string{"bbq"}})
	if err != nil || res.Fetched != 0 || res.Present != 8 {
		t.Errorf("second pull: %+v %v", res, err)
	}
}

func TestDataDir(t *testing.T) {
	t.Setenv("MATSTEER_CACHE", "/c")
	t.Setenv(DataEnv, "")
	if d, local := DataDir(); d != filepath.Join("/c", "data") || local {
		t.Errorf("DataDir() = %s, %v", d, local)
	}
	t.Setenv(DataEnv, "/shared")
	if d, local := DataDir(); d != "/shared" || !local {
		t.Errorf("DataDir() = %s, %v", d, local)
	}
}
