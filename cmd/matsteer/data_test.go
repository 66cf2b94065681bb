package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/internal/testenv"
)

func TestDataCLIErrors(t *testing.T) {
	t.Setenv("MATSTEER_CACHE", t.TempDir())
	t.Setenv(datasets.DataEnv, "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", "--dataset", "imagenet"}, "imagenet"},
		{[]string{"pull", "--mirror", "ftp://x"}, "--mirror"},
		{[]string{"pull", "--mirror", "::"}, "--mirror"},
		{[]string{"pull", "--stall-timeout", "0s"}, "--stall-timeout"},
		{[]string{"pull", "--dir", ""}, "--dir"},
		{[]string{"list", "--dataset", "nope"}, "nope"},
	} {
		_, _, err := runCommand(t, "data", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
	// $MATSTEER_DATA pointing at a directory without the files.
	empty := t.TempDir()
	t.Setenv(datasets.DataEnv, empty)
	if _, _, err := runCommand(t, "data", "pull"); err == nil || !strings.Contains(err.Error(), "lacks") {
		t.Errorf("empty $MATSTEER_DATA: %v", err)
	}
	if out, _, err := runCommand(t, "data", "path"); err != nil || strings.TrimSpace(out) != empty {
		t.Errorf("path: %q %v", out, err)
	}
}

// TestDataCLIPull pulls BBQ from a local server serving the shared copy
// under the upstream URLs; with $MATSTEER_DATA set to the shared copy,
// pull only checks it.
func TestDataCLIPull(t *testing.T) {
	root := testenv.DataDir(t)
	files := map[string]string{}
	for _, u := range datasets.Upstreams() {
		for _, f := range u.Files {
			files["/"+u.Repo+"/"+u.Ref+"/"+f.Upstream] = filepath.Join(root, u.Dataset, filepath.FromSlash(f.Path))
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, p)
	}))
	defer srv.Close()
	cache := t.TempDir()
	t.Setenv("MATSTEER_CACHE", cache)
	t.Setenv(datasets.DataEnv, "")
	out, stderr, err := runCommand(t, "data", "pull", "--dataset", "bbq", "--mirror", srv.URL)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr)
	}
	dir := filepath.Join(cache, "data")
	if strings.TrimSpace(out) != dir || !strings.Contains(stderr, "8 files fetched") {
		t.Errorf("stdout %q, stderr %q", out, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "bbq", "data", "Age.jsonl")); err != nil {
		t.Error(err)
	}
	out, _, err = runCommand(t, "data", "list")
	if err != nil || !strings.Contains(out, "8/8") || !strings.Contains(out, "unknown (main)") {
		t.Errorf("list: %v\n%s", err, out)
	}
	t.Setenv(datasets.DataEnv, root)
	out, stderr, err = runCommand(t, "data", "pull")
	if err != nil || strings.TrimSpace(out) != root || !strings.Contains(stderr, "nothing downloaded") {
		t.Errorf("local copy: %v %q %q", err, out, stderr)
	}
}
