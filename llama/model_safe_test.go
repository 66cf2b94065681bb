package llama

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

// Issue 11: a FIFO as --model blocked in os.Open, and a non-GGUF file's
// error showed its first bytes (`bad magic "root"`).
func TestLoadModelRefusesNonRegularAndHidesBytes(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "m.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", dir} {
		done := make(chan error, 1)
		go func() { _, err := LoadModel(p, ModelParams{}); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("%s: %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: LoadModel blocked", p)
		}
	}
	shadow := filepath.Join(dir, "shadow")
	os.WriteFile(shadow, []byte("root:$6$SECRET:19000:0:99999:7:::\n"), 0o600)
	_, err := LoadModel(shadow, ModelParams{})
	if !errors.Is(err, ErrNotGGUF) || strings.Contains(err.Error(), "root") {
		t.Fatalf("non-GGUF file: %v", err)
	}
}
