package gguf

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

// Issue 11: loading /etc/shadow answered `not a GGUF file (magic "root")`.
func TestBadMagicDoesNotEchoBytes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(p, []byte("root:$6$SECRET:19000:0:99999:7:::\n"), 0o600)
	_, err := ReadFile(p)
	if !errors.Is(err, ErrNotGGUF) {
		t.Fatalf("want ErrNotGGUF, got %v", err)
	}
	if strings.Contains(err.Error(), "root") || strings.Contains(err.Error(), "726f6f74") {
		t.Fatalf("error echoes the file's bytes: %v", err)
	}
	if _, err := Parse([]byte("GGML\x03\x00\x00\x00")); !errors.Is(err, ErrNotGGUF) || strings.Contains(err.Error(), "GGML") {
		t.Fatalf("Parse bad magic: %v", err)
	}
}

// Untrusted keys and names in errors are cut short.
func TestLongKeysAndNamesNotEchoed(t *testing.T) {
	long := strings.Repeat("k", 10000)
	// A duplicate key of 10000 bytes.
	var w writer
	w.WriteString(Magic)
	w.u32(3)
	w.u64(0)
	w.u64(2)
	for range 2 {
		w.str(long)
		w.u32(uint32(TypeUint8))
		w.WriteByte(1)
	}
	_, err := Parse(w.Bytes())
	if err == nil || !strings.Contains(err.Error(), "duplicate metadata key") || len(err.Error()) > 200 {
		t.Fatalf("duplicate long key: %.300v", err)
	}
	// A tensor name of 10000 bytes: the length is reported, not the name.
	w = writer{}
	w.WriteString(Magic)
	w.u32(3)
	w.u64(1)
	w.u64(0)
	w.str(long)
	w.Write(make([]byte, 64))
	_, err = Parse(w.Bytes())
	if err == nil || !strings.Contains(err.Error(), "name of 10000 bytes") || strings.Contains(err.Error(), "kkkk") {
		t.Fatalf("long tensor name: %.300v", err)
	}
	// A bool byte other than 0/1 is refused without echoing it.
	w = writer{}
	w.WriteString(Magic)
	w.u32(3)
	w.u64(0)
	w.u64(1)
	w.str("b")
	w.u32(uint32(TypeBool))
	w.WriteByte(0x41)
	_, err = Parse(w.Bytes())
	if err == nil || strings.Contains(err.Error(), "65") {
		t.Fatalf("bad bool: %v", err)
	}
}

// Issue 11: /dev/zero, /dev/urandom and FIFOs were read without limit or
// blocked the reader forever.
func TestReadFileRefusesNonRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", "/dev/urandom", fifo, t.TempDir()} {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(p); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("%s: %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadFile blocked", p)
		}
	}
}

func TestReadFileSizeLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.gguf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("GGUF"))
	f.Truncate(MaxReadBytes + 1) // sparse
	f.Close()
	if _, err := ReadFile(p); !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	good, _ := sampleFile().Marshal()
	os.WriteFile(p, good, 0o600)
	if _, err := ReadFileLimit(p, int64(len(good))-1); !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("over a chosen limit: %v", err)
	}
	if _, err := ReadFileLimit(p, int64(len(good))); err != nil {
		t.Fatal(err)
	}
}
