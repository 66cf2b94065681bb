package eval

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/matsteer/matsteer/internal/safefile"
)

// ReadReport used os.ReadFile: a FIFO blocked it and /dev/zero was read
// without limit.
func TestReadReportRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "r.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", dir} {
		done := make(chan error, 1)
		go func() { _, err := ReadReport(p); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("%s: %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadReport blocked", p)
		}
	}
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(MaxReportBytes + 1)
	f.Close()
	if _, err := ReadReport(big); !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	ok := filepath.Join(dir, "ok.json")
	os.WriteFile(ok, []byte(`{"task": "bbq"}`), 0o600)
	if rep, err := ReadReport(ok); err != nil || rep.Task != "bbq" {
		t.Fatalf("small report: %+v, %v", rep, err)
	}
}
