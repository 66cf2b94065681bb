package safefile

// Output side: atomic writers and up-front checks of output paths.
//
// A command that writes files checks every output with [CheckOutputs]
// before it starts any work (loading a model, extracting, training), so an
// unusable path costs nothing, and writes each one through [Create] (or
// [WriteFile]), so the previous file at the path stays intact until the
// new one is complete and synced: an error, a cancellation or a signal
// leaves the old file and no temporary file behind.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Output names one file a command will write: the flag (or argument name)
// it came from, for error messages, and its path.
type Output struct {
	Flag string // "--out", "OUT"
	Path string
}

// Input names one file or directory a command reads.
type Input struct {
	Flag string // "--acts", "IN"
	Path string
}

// CheckOutputs validates outputs before any work starts. For each output:
// the path is not empty; its parent directory exists, is a directory and
// accepts new files (a probe file is created and removed); the path is not
// an existing directory or other non-regular file; it is not the same file
// as any input or any other output (os.SameFile for existing files, the
// cleaned absolute path for files that do not exist yet). Outputs with an
// empty Flag are skipped only if their Path is empty too; pass only the
// outputs that were asked for.
func CheckOutputs(outputs []Output, inputs []Input) error {
	for i, o := range outputs {
		if err := checkOutput(o); err != nil {
			return err
		}
		for _, in := range inputs {
			if in.Path == "" {
				continue
			}
			if samePath(o.Path, in.Path) {
				return fmt.Errorf("%s %s is the same file as the input %s %s; choose another output path", o.Flag, o.Path, in.Flag, in.Path)
			}
		}
		for _, p := range outputs[:i] {
			if samePath(o.Path, p.Path) {
				return fmt.Errorf("%s %s is the same file as %s %s; give each output its own path", o.Flag, o.Path, p.Flag, p.Path)
			}
		}
	}
	return nil
}

func checkOutput(o Output) error {
	if o.Path == "" {
		return fmt.Errorf("%s: empty path", o.Flag)
	}
	if st, err := os.Stat(o.Path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("%s %s: is a directory, want a file path", o.Flag, o.Path)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s %s: is %s, not a regular file; outputs are written to a temporary file and renamed into place", o.Flag, o.Path, Kind(st.Mode()))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w", o.Flag, o.Path, unwrapPath(err))
	}
	dir := filepath.Dir(o.Path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: directory %s does not exist", o.Flag, o.Path, dir)
	case err != nil:
		return fmt.Errorf("%s %s: directory %s: %w", o.Flag, o.Path, dir, unwrapPath(err))
	case !st.IsDir():
		return fmt.Errorf("%s %s: %s is not a directory", o.Flag, o.Path, dir)
	}
	probe, err := os.CreateTemp(dir, ".matsteer-probe-*")
	if err != nil {
		return fmt.Errorf("%s %s: cannot create files in directory %s: %w", o.Flag, o.Path, dir, unwrapPath(err))
	}
	name := probe.Name()
	probe.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%s %s: cannot remove files in directory %s: %w", o.Flag, o.Path, dir, unwrapPath(err))
	}
	return nil
}

// samePath reports whether a and b name the same file: the same inode when
// both exist, else the same cleaned absolute path.
func samePath(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return absClean(a) == absClean(b)
}

func absClean(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// unwrapPath drops the *PathError wrapper (whose message repeats the path).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// File is an output being written: a temporary file in the destination's
// directory that replaces the destination only on Commit. Every File must
// end with Commit or Abort; the usual pattern is
//
//	f, err := safefile.Create(path)
//	if err != nil { ... }
//	defer f.Abort() // no-op after a successful Commit
//	... write to f ...
//	return f.Commit()
type File struct {
	*os.File
	path string
	done bool
}

// live holds the temporary files being written, for RemoveTemps.
var live sync.Map // temp path -> struct{}

// Create starts writing the file at path. Nothing at path changes until
// Commit.
func Create(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("create: empty path")
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return nil, fmt.Errorf("create %s: not a file path", path)
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, unwrapPath(err))
	}
	live.Store(f.Name(), struct{}{})
	return &File{File: f, path: path}, nil
}

// Path returns the destination path.
func (f *File) Path() string { return f.path }

// Commit syncs the temporary file and renames it over the destination.
// On failure the temporary file is removed and the destination is
// unchanged.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("commit %s: already committed or aborted", f.path)
	}
	tmp := f.File.Name()
	err := f.File.Chmod(0o644)
	if err == nil {
		err = f.File.Sync()
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	f.done = true
	live.Delete(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, unwrapPath(err))
	}
	SyncDir(filepath.Dir(f.path))
	return nil
}

// Abort discards the temporary file. It is safe to call more than once and
// after Commit (then it does nothing).
func (f *File) Abort() {
	if f == nil || f.done {
		return
	}
	f.done = true
	tmp := f.File.Name()
	_ = f.File.Close()
	_ = os.Remove(tmp)
	live.Delete(tmp)
}

// RemoveTemps removes every temporary file of this process that is still
// being written (for a last-resort cleanup before exiting on a signal).
func RemoveTemps() {
	live.Range(func(k, _ any) bool {
		_ = os.Remove(k.(string))
		live.Delete(k)
		return true
	})
}

// Write writes the file at path atomically with fn's output: the
// destination is replaced only when fn succeeds and the data is synced.
func Write(path string, fn func(w io.Writer) error) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := fn(f); err != nil {
		return err
	}
	return f.Commit()
}

// WriteFile writes data to path atomically (see Write).
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", path, unwrapPath(err))
		}
		return nil
	})
}

// SyncDir makes a rename into dir durable; failures are ignored (not every
// file system supports syncing a directory).
func SyncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
