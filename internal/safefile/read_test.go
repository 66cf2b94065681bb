package safefile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// within fails the test if fn does not return within a few seconds (a FIFO
// opened in blocking mode would hang forever).
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return (blocked)", what)
	}
}

func TestReadFileRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	want := []byte("hello, world")
	if err := os.WriteFile(p, want, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p, int64(len(want)))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	empty := filepath.Join(t.TempDir(), "e")
	os.WriteFile(empty, nil, 0o600)
	if got, err := ReadFile(empty, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty file: %q, %v", got, err)
	}
	f, info, err := Open(p, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if info.Size() != int64(len(want)) || !info.Mode().IsRegular() {
		t.Fatalf("info: size %d mode %v", info.Size(), info.Mode())
	}
	// Blocking mode again after the checks.
	fl, err := fcntlGetfl(f)
	if err != nil {
		t.Fatal(err)
	}
	if fl&syscall.O_NONBLOCK != 0 {
		t.Fatal("O_NONBLOCK still set on the returned file")
	}
	b, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("read back %q, %v", b, err)
	}
}

func fcntlGetfl(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fl int
	var ferr error
	rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		fl = int(r)
		if e != 0 {
			ferr = e
		}
	})
	return fl, ferr
}

func TestRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var err error
	within(t, "ReadFile on a FIFO", func() { _, err = ReadFile(p, 1<<20) })
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "named pipe (FIFO)") {
		t.Fatalf("FIFO: %v", err)
	}
	within(t, "Open on a FIFO", func() { _, _, err = Open(p, Unlimited) })
	if !errors.Is(err, ErrNotRegular) {
		t.Fatalf("FIFO Open: %v", err)
	}
}

func TestRefusesDevices(t *testing.T) {
	for _, p := range []string{"/dev/zero", "/dev/urandom", "/dev/null"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		var err error
		within(t, "ReadFile "+p, func() { _, err = ReadFile(p, 1<<20) })
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "character device") || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v", p, err)
		}
		if _, _, err := Open(p, Unlimited); !errors.Is(err, ErrNotRegular) {
			t.Errorf("Open %s unlimited: %v", p, err)
		}
	}
}

func TestRefusesDirectory(t *testing.T) {
	d := t.TempDir()
	_, err := ReadFile(d, 1<<20)
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}

func TestRefusesSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skip(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: p}); err != nil {
		t.Skip(err)
	}
	_, err = ReadFile(p, 1<<20)
	// Opening a socket fails with ENXIO on Linux; either way it is refused.
	if err == nil {
		t.Fatal("socket accepted")
	}
}

func TestRefusesOversizedSparseFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 40 // 1 TiB, sparse: no disk space used
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Skipf("sparse file: %v", err)
	}
	f.Close()
	_, err = ReadFile(p, 1<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	for _, want := range []string{"1099511627776 bytes", "1048576 bytes (1 MiB)", p} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Unlimited opens it (models are streamed, not read whole).
	f2, info, err := Open(p, Unlimited)
	if err != nil {
		t.Fatalf("Open unlimited: %v", err)
	}
	f2.Close()
	if info.Size() != size {
		t.Fatalf("size %d", info.Size())
	}
	if _, err := ReadFile(p, Unlimited); err == nil {
		t.Fatal("ReadFile without a limit accepted")
	}
}

func TestExactLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, make([]byte, 100), 0o600)
	if _, err := ReadFile(p, 100); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := ReadFile(p, 99); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one over the limit: %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing")
	_, err := ReadFile(p, 1<<20)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != p {
		t.Fatalf("missing: want a *fs.PathError for %s, got %#v", p, err)
	}
}

// A file that reports size 0 but has content (like /proc files) is still
// cut at the limit.
func TestProcFileCapped(t *testing.T) {
	p := "/proc/self/maps"
	st, err := os.Stat(p)
	if err != nil || st.Size() != 0 {
		t.Skip("no /proc/self/maps of size 0")
	}
	_, err = ReadFile(p, 16)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("proc file over the limit: %v", err)
	}
	if strings.Contains(err.Error(), "r-xp") || strings.Contains(err.Error(), "/usr") {
		t.Fatalf("error leaks contents: %v", err)
	}
}

func TestLimitReader(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10} {
		b, err := io.ReadAll(LimitReader(strings.NewReader(strings.Repeat("x", n)), 10, "s"))
		if err != nil || len(b) != n {
			t.Fatalf("%d bytes under a limit of 10: %d, %v", n, len(b), err)
		}
	}
	for _, n := range []int{11, 100, 100000} {
		b, err := io.ReadAll(LimitReader(strings.NewReader(strings.Repeat("x", n)), 10, "s"))
		if !errors.Is(err, ErrTooLarge) || len(b) > 10 {
			t.Fatalf("%d bytes over a limit of 10: %d bytes, %v", n, len(b), err)
		}
	}
}

// Errors never hold the file's bytes.
func TestErrorsDoNotLeakContents(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(p, []byte("root:SECRETHASH:19000:0:99999:7:::\n"), 0o600)
	_, err := ReadFile(p, 4)
	if err == nil || strings.Contains(err.Error(), "root") || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("error: %v", err)
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("abc"); got != `"abc"` {
		t.Fatalf("Quote(abc) = %s", got)
	}
	long := strings.Repeat("é", 100) // 200 bytes
	got := Quote(long)
	if !strings.HasSuffix(got, `"...`) || len(got) > maxQuote+8 {
		t.Fatalf("Quote(long) = %s", got)
	}
	if got := Quote("a\x00\nb"); got != `"a\x00\nb"` {
		t.Fatalf("Quote(control) = %s", got)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		5:         "5 bytes",
		1 << 10:   "1024 bytes (1 KiB)",
		256 << 20: "268435456 bytes (256 MiB)",
		1 << 30:   "1073741824 bytes (1 GiB)",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
