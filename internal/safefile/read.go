// Package safefile opens and reads input files defensively, so that a path
// chosen by a careless user or a remote client cannot hang, exhaust memory or
// leak file contents.
//
// [Open] opens with O_RDONLY|O_NONBLOCK|O_CLOEXEC (a FIFO without a writer
// does not block the open), checks the opened descriptor with fstat (no race
// with a path swapped after a stat), refuses anything that is not a regular
// file (directory, FIFO, device, socket; the error names the kind) and files
// larger than a caller-chosen limit (the error gives the size and the limit),
// then switches the descriptor back to blocking mode. [ReadFile] also stops
// reading at limit+1 bytes, so a file that grows while it is read (or a
// /proc file that reports size 0) cannot exceed the limit either.
//
// Errors name the path and what is wrong with it, never the file's bytes.
// [Quote] shortens and quotes untrusted strings (keys, names) taken from
// a file for use in error messages.
package safefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"unicode/utf8"
)

// Unlimited as maxBytes disables the size limit (only the file-type check
// remains); use it for files that are streamed, never read whole, such as
// models.
const Unlimited int64 = -1

// ErrNotRegular is wrapped by the errors for paths that are not regular
// files.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by the errors for files over the size limit.
var ErrTooLarge = errors.New("file too large")

// Open opens path for reading after checking, on the opened descriptor, that
// it is a regular file of at most maxBytes bytes (any size when maxBytes is
// [Unlimited]). It returns the file, in blocking mode, and its FileInfo.
// Open errors are *fs.PathError as from os.Open (so errors.Is(err,
// fs.ErrNotExist) works).
func Open(path string, maxBytes int64) (*os.File, os.FileInfo, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if kind := kindOf(uint32(st.Mode)); kind != "" {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("%s: is %s, %w", path, kind, ErrNotRegular)
	}
	if maxBytes >= 0 && st.Size > maxBytes {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("%s: is %d bytes, more than the limit of %s: %w", path, st.Size, FormatSize(maxBytes), ErrTooLarge)
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

func fstat(fd int, st *syscall.Stat_t) error {
	for {
		err := syscall.Fstat(fd, st)
		if err != syscall.EINTR {
			return err
		}
	}
}

// Kind names the type of a file that is not a regular file, for messages
// such as "x is a named pipe (FIFO), not a regular file" ("" for a regular
// file).
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// kindOf names the file type of a stat mode, "" for a regular file.
func kindOf(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return ""
	case syscall.S_IFDIR:
		return "a directory"
	case syscall.S_IFIFO:
		return "a named pipe (FIFO)"
	case syscall.S_IFCHR:
		return "a character device"
	case syscall.S_IFBLK:
		return "a block device"
	case syscall.S_IFSOCK:
		return "a socket"
	case syscall.S_IFLNK:
		return "a symbolic link"
	}
	return "not a regular file"
}

// grewTooLarge is the error for a stream that passes its limit while read.
func grewTooLarge(name string, maxBytes int64) error {
	return fmt.Errorf("%s: holds more than the limit of %s (read stopped there): %w", name, FormatSize(maxBytes), ErrTooLarge)
}

// FormatSize renders a byte count for messages: "268435456 bytes (256 MiB)".
func FormatSize(n int64) string {
	s := strconv.FormatInt(n, 10) + " bytes"
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		s += " (" + strconv.FormatInt(n>>30, 10) + " GiB)"
	case n >= 1<<20 && n%(1<<20) == 0:
		s += " (" + strconv.FormatInt(n>>20, 10) + " MiB)"
	case n >= 1<<10 && n%(1<<10) == 0:
		s += " (" + strconv.FormatInt(n>>10, 10) + " KiB)"
	}
	return s
}

// ReadFile reads the whole regular file at path, refusing it when it holds
// (or grows to) more than maxBytes bytes. maxBytes must not be [Unlimited].
func ReadFile(path string, maxBytes int64) ([]byte, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("safefile: ReadFile of %s needs a size limit", path)
	}
	f, info, err := Open(path, maxBytes)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := info.Size() + 1 // +1: see EOF without growing the buffer
	if size <= 1 {
		size = 512 // e.g. /proc files report 0
	}
	var buf bytes.Buffer
	buf.Grow(int(min(size, maxBytes+1)))
	if _, err := buf.ReadFrom(LimitReader(f, maxBytes, path)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// LimitReader returns a reader that reads from r and fails with an error
// wrapping [ErrTooLarge] (naming name and the limit) once more than
// maxBytes bytes have been read. Use it when streaming a file opened with
// [Open], which may grow after the size check.
func LimitReader(r io.Reader, maxBytes int64, name string) io.Reader {
	return &limitReader{r: r, left: maxBytes, max: maxBytes, name: name}
}

type limitReader struct {
	r    io.Reader
	left int64 // bytes still allowed
	max  int64
	name string
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, grewTooLarge(l.name, l.max)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		n += int(l.left) // hand out only the allowed bytes
		return n, grewTooLarge(l.name, l.max)
	}
	return n, err
}

// maxQuote is the number of bytes of an untrusted string Quote keeps.
const maxQuote = 64

// Quote returns s quoted for an error message (Go %q syntax), cut to its
// first 64 bytes (at a UTF-8 boundary) with "..." appended when longer.
// Use it for names and keys taken from a file; never put free text or raw
// bytes from a file into an error.
func Quote(s string) string {
	if len(s) <= maxQuote {
		return strconv.Quote(s)
	}
	cut := maxQuote
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}
