package acts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matsteer/matsteer/internal/safefile"
)

// Issue 11: Open used os.Open, which blocks forever on a FIFO without a
// writer before the regular-file check could run.
func TestOpenRefusesFIFOAndDevices(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", "/dev/urandom", t.TempDir()} {
		done := make(chan error, 1)
		go func() {
			f, err := Open(p)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("%s: %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Open blocked", p)
		}
	}
}

// withHeader wraps a JSON header in the safetensors length prefix.
func withHeader(js string) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, uint64(len(js))), js...)
}

// Errors describe JSON problems by position, never by the header's text,
// and cut long names short.
func TestHeaderErrorsDoNotEchoContents(t *testing.T) {
	long := strings.Repeat("S", 5000)
	for _, c := range []struct {
		name, js, want string
	}{
		{"syntax", `{"a": SECRET}`, "invalid JSON at header byte"},
		{"number literal", `{"a":{"dtype":"F32","shape":[1e999999],"data_offsets":[0,4]}}`, "wrong type"},
		{"long key twice", `{"` + long + `":{"dtype":"I8","shape":[0],"data_offsets":[0,0]},"` + long + `":{}}`, "appears twice"},
		{"long dtype", `{"a":{"dtype":"` + long + `","shape":[1],"data_offsets":[0,4]}}`, "unknown dtype"},
		{"long tensor name", `{"` + long + `":{"dtype":"F32"}}`, "is missing"},
		{"metadata value", `{"__metadata__":{"matsteer.format_version":"1","matsteer.n_embd":"SECRET` + long + `"},"activations":{"dtype":"F32","shape":[0,1],"data_offsets":[0,0]},"attribute":{"dtype":"I32","shape":[0],"data_offsets":[0,0]},"label":{"dtype":"I8","shape":[0],"data_offsets":[0,0]},"sample_id":{"dtype":"I64","shape":[0],"data_offsets":[0,0]},"position":{"dtype":"I32","shape":[0],"data_offsets":[0,0]}}`, "not an integer"},
	} {
		b := withHeader(c.js)
		_, err := OpenReader(bytes.NewReader(b), int64(len(b)), "x")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %.300v, want one containing %q", c.name, err, c.want)
			continue
		}
		if len(err.Error()) > 300 || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "1e999999") {
			t.Errorf("%s: error echoes the header: %.400v", c.name, err)
		}
	}
}

// The reader applies the writer's checks: a NaN or Inf row is refused with
// the row and column named.
func TestReaderRefusesNonFiniteRows(t *testing.T) {
	vecs, rows := testRows(3, 2)
	path := writeFile(t, t.TempDir(), testMeta(2), vecs, rows, 3)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		b := bytes.Clone(data)
		binary.LittleEndian.PutUint32(b[f.actOff+4*(2*2+1):], math.Float32bits(bad))
		g, err := OpenReader(bytes.NewReader(b), int64(len(b)), "x")
		if err != nil {
			t.Fatal(err)
		}
		_, err = g.Vectors()
		if err == nil || !strings.Contains(err.Error(), "row 2, column 1") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
