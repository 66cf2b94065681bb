package plotfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

func TestWriteFormatsAndRefusals(t *testing.T) {
	p := plot.New()
	l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 2}})
	if err != nil {
		t.Fatal(err)
	}
	p.Add(l)
	dir := t.TempDir()
	magic := map[string]string{".png": "\x89PNG", ".svg": "<?xml", ".pdf": "%PDF"}
	for ext, want := range magic {
		path := filepath.Join(dir, "chart"+strings.ToUpper(ext))
		if err := Write(p, path); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if !bytes.HasPrefix(b, []byte(want)) {
			t.Errorf("%s starts with %q", ext, b[:min(8, len(b))])
		}
	}
	keep := filepath.Join(dir, "steer.gguf")
	if err := os.WriteFile(keep, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{keep, filepath.Join(dir, "noext"), filepath.Join(dir, "x.json")} {
		if err := Write(p, bad); err == nil || !strings.Contains(err.Error(), "unsupported plot format") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if b, _ := os.ReadFile(keep); string(b) != "precious" {
		t.Fatalf("refused write changed the file to %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "noext")); !os.IsNotExist(err) {
		t.Fatal("refused write created a file")
	}
}
