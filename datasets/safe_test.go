package datasets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matsteer/matsteer/internal/safefile"
)

// noBlock runs fn and fails if it does not return within a few seconds
// (opening a FIFO without a writer used to block forever).
func noBlock(t *testing.T, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked", what)
		return nil
	}
}

func mkfifo(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 11: every file argument as a FIFO or a device is refused promptly
// by every loader (and by format detection) instead of blocking or reading
// without end.
func TestLoadersRefuseFIFOsAndDevices(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{"a.jsonl", "a.json", "a.csv"} {
		paths = append(paths, mkfifo(t, filepath.Join(dir, "fifo", name)))
		link := filepath.Join(dir, "dev", name)
		os.MkdirAll(filepath.Dir(link), 0o755)
		if err := os.Symlink("/dev/zero", link); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, link)
	}
	loaders := map[string]func(string) error{
		"LoadJSONL":      func(p string) error { _, err := LoadJSONL(p); return err },
		"LoadBBQ":        func(p string) error { _, err := LoadBBQ(p); return err },
		"LoadTruthfulQA": func(p string) error { _, err := LoadTruthfulQA(p); return err },
		"LoadToxiGen":    func(p string) error { _, err := LoadToxiGen(p); return err },
		"DetectFormat":   func(p string) error { _, err := DetectFormat(p); return err },
		"LoadExamples":   func(p string) error { _, err := LoadExamples(p, FormatAuto); return err },
	}
	for name, load := range loaders {
		for _, p := range paths {
			if name == "LoadToxiGen" && !strings.HasSuffix(p, ".json") || name == "DetectFormat" && strings.HasSuffix(p, ".csv") {
				continue // decided by the extension, without opening the file
			}
			err := noBlock(t, name+" "+p, func() error { return load(p) })
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("%s(%s): %v", name, p, err)
			}
		}
	}
	// Directories whose data files are FIFOs.
	bbq := filepath.Join(dir, "bbq")
	mkfifo(t, filepath.Join(bbq, "Age.jsonl"))
	if err := noBlock(t, "LoadBBQ dir", func() error { _, err := LoadBBQ(bbq); return err }); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("LoadBBQ(dir with a FIFO): %v", err)
	}
	tox := filepath.Join(dir, "tox")
	mkfifo(t, filepath.Join(tox, "hate_x_1k.txt"))
	if err := noBlock(t, "LoadToxiGen dir", func() error { _, err := LoadToxiGen(tox); return err }); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("LoadToxiGen(dir with a FIFO): %v", err)
	}
}

func TestLoadersRefuseOversizedFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"big.jsonl", "big.json", "big.csv"} {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(MaxFileBytes + 1); err != nil { // sparse
			f.Close()
			t.Skip(err)
		}
		f.Close()
		if _, err := LoadExamples(p, FormatAuto); !errors.Is(err, safefile.ErrTooLarge) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadJSONL(filepath.Join(dir, "big.jsonl")); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("LoadJSONL: %v", err)
	}
	if _, err := LoadBBQ(filepath.Join(dir, "big.jsonl")); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("LoadBBQ: %v", err)
	}
}

// A line-based file without newlines is refused at MaxLineBytes instead of
// being buffered whole.
func TestLongLineRefused(t *testing.T) {
	dir := t.TempDir()
	good := `{"attribute": "a", "label": 1, "prompt": "p"}` + "\n"
	p := writeTemp(t, dir, "long.jsonl", good+strings.Repeat("x", MaxLineBytes+1))
	_, err := LoadJSONL(p)
	if err == nil || !strings.Contains(err.Error(), "line 2: line longer than 16777216 bytes (16 MiB)") {
		t.Fatalf("LoadJSONL: %.300v", err)
	}
	if _, err := DetectFormat(writeTemp(t, dir, "first.jsonl", strings.Repeat(" ", MaxLineBytes+1))); err == nil || !strings.Contains(err.Error(), "line longer") {
		t.Fatalf("DetectFormat: %.300v", err)
	}
	// Exactly at the limit (newline included) is fine for the reader.
	p = writeTemp(t, dir, "edge.jsonl", good+`{"attribute": "a", "label": 0, "prompt": "`+strings.Repeat("y", MaxLineBytes-100)+`"}`+"\n")
	if ex, err := LoadJSONL(p); err != nil || len(ex) != 2 {
		t.Fatalf("line under the limit: %d examples, %.300v", len(ex), err)
	}
}

// Errors quote at most a short piece of the file.
func TestErrorsDoNotEchoLongContent(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("S", 5000)
	cases := []struct {
		name, file, body string
		load             func(string) error
		want             string
	}{
		{"jsonl unknown key", "a.jsonl", `{"attribute": "a", "label": 1, "prompt": "p", "` + long + `": 1}`,
			func(p string) error { _, err := LoadJSONL(p); return err }, "unknown field"},
		{"jsonl duplicate key", "b.jsonl", `{"` + long + `": 1, "` + long + `": 2}`,
			func(p string) error { _, err := LoadJSONL(p); return err }, "appears twice"},
		{"csv header", "c.csv", "root:" + long + ",x\nq,a\n",
			func(p string) error { _, err := LoadTruthfulQA(p); return err }, `column "Question" is missing`},
		{"bbq condition", "d.jsonl", strings.Replace(bbqLine(0, "ambig", "neg", 1), `"ambig"`, `"`+long+`"`, 1),
			func(p string) error { _, err := LoadBBQ(p); return err }, "context_condition"},
		{"bbq type", "e.jsonl", strings.Replace(bbqLine(0, "ambig", "neg", 1), `"label": 1`, `"label": 1`+strings.Repeat("0", 5000), 1),
			func(p string) error { _, err := LoadBBQ(p); return err }, "invalid row"},
		{"toxigen label", "f.json", `[{"text": "t", "label": "` + long + `", "target_groups": ["g"]}]`,
			func(p string) error { _, err := LoadToxiGen(p); return err }, "is not \"hate\""},
		{"one-class attribute", "g.jsonl", `{"attribute": "` + long + `", "label": 1, "prompt": "p"}`,
			func(p string) error { _, err := LoadExamples(p, FormatJSONL); return err }, "no negative examples"},
	}
	for _, c := range cases {
		p := writeTemp(t, dir, c.file, c.body)
		err := c.load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %.300v, want one containing %q", c.name, err, c.want)
			continue
		}
		if n := len(err.Error()) - len(p); n > 300 {
			t.Errorf("%s: error of %d bytes echoes the file: %.400v", c.name, n, err)
		}
	}
}
