package safefile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dirEntries lists a directory's names (temporary files included).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestCreateCommitReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	writeTestFile(t, path, "old")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new contents"); err != nil {
		t.Fatal(err)
	}
	// Before Commit the old file is intact.
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("before commit: %q", b)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // no-op after Commit
	if b, _ := os.ReadFile(path); string(b) != "new contents" {
		t.Fatalf("after commit: %q", b)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("left behind: %v", names)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("second Commit succeeded")
	}
}

func TestAbortLeavesOldFileAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	writeTestFile(t, path, "old")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("partial")
	f.Abort()
	f.Abort()
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("after abort: %q", b)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("left behind: %v", names)
	}
	// Write: an error from fn leaves the old file.
	boom := errors.New("boom")
	if err := Write(path, func(w io.Writer) error { w.Write([]byte("x")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("Write error %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("after failed Write: %q", b)
	}
	if err := WriteFile(path, []byte("done")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "done" {
		t.Fatalf("after WriteFile: %q", b)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("left behind: %v", names)
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	RemoveTemps()
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
	f.Abort()
}

func TestCheckOutputs(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "s.gguf")
	writeTestFile(t, existing, "steer")
	link := filepath.Join(dir, "link.gguf")
	if err := os.Link(existing, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	writeTestFile(t, notDir, "x")
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	roProbe := filepath.Join(ro, "probe")
	if f, err := os.Create(roProbe); err == nil { // running as root: no read-only directories
		f.Close()
		os.Remove(roProbe)
		ro = ""
	}
	fresh := filepath.Join(dir, "new.gguf")

	cases := []struct {
		name    string
		outputs []Output
		inputs  []Input
		want    string // "" = ok
	}{
		{"fresh", []Output{{"--out", fresh}}, nil, ""},
		{"existing regular", []Output{{"--out", existing}}, nil, ""},
		{"empty", []Output{{"--out", ""}}, nil, "--out: empty path"},
		{"directory", []Output{{"--out", dir}}, nil, "is a directory"},
		{"fifo", []Output{{"--out", fifo}}, nil, "is a named pipe (FIFO)"},
		{"device", []Output{{"--out", "/dev/null"}}, nil, "character device"},
		{"missing dir", []Output{{"--out", filepath.Join(dir, "nope", "x")}}, nil, "does not exist"},
		{"parent is a file", []Output{{"--out", filepath.Join(notDir, "x")}}, nil, "not a directory"},
		{"same as input", []Output{{"--out", existing}}, []Input{{"--acts", existing}}, "--out " + existing + " is the same file as the input --acts " + existing},
		{"hard link of input", []Output{{"--out", link}}, []Input{{"--acts", existing}}, "same file as the input --acts"},
		{"unclean same input", []Output{{"--out", filepath.Join(dir, ".", "s.gguf")}}, []Input{{"--data", existing}}, "same file"},
		{"two outputs, both new", []Output{{"--out", fresh}, {"--log", filepath.Join(dir, "x", "..", "new.gguf")}}, nil, "--log " + filepath.Join(dir, "x", "..", "new.gguf") + " is the same file as --out " + fresh},
		{"two outputs, existing", []Output{{"--out", existing}, {"--log", existing}}, nil, "is the same file as --out"},
		{"distinct", []Output{{"--out", fresh}, {"--log", existing}}, []Input{{"--acts", notDir}, {"--acts", ""}}, ""},
	}
	if ro != "" {
		cases = append(cases, struct {
			name    string
			outputs []Output
			inputs  []Input
			want    string
		}{"read-only dir", []Output{{"--out", filepath.Join(ro, "x")}}, nil, "cannot create files"})
	}
	for _, c := range cases {
		err := CheckOutputs(c.outputs, c.inputs)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// Nothing was created or changed by the checks.
	if b, _ := os.ReadFile(existing); string(b) != "steer" {
		t.Fatalf("existing file changed: %q", b)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Fatal("check created the output")
	}
	for _, n := range dirEntries(t, dir) {
		if strings.HasPrefix(n, ".matsteer-probe") {
			t.Fatalf("probe file left: %s", n)
		}
	}
}
