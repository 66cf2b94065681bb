// Package plotfile writes gonum plots to files named by users: the format
// comes from the file name's extension and is checked before anything is
// written, and the file is replaced atomically (internal/safefile), so a
// wrong name or a failed render never truncates an existing file.
package plotfile

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"

	"github.com/matsteer/matsteer/internal/safefile"
)

// Formats are the supported extensions (gonum/plot's PNG and vector backends).
var Formats = []string{".png", ".svg", ".pdf"}

// Check refuses a path whose extension names no supported format.
func Check(path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	for _, f := range Formats {
		if ext == f {
			return nil
		}
	}
	return fmt.Errorf("%s: unsupported plot format %q; want a file ending in %s", path, ext, strings.Join(Formats, ", "))
}

// Write renders p at 8×5 inches in the format of path's extension and
// writes it atomically.
func Write(p *plot.Plot, path string) error {
	if err := Check(path); err != nil {
		return err
	}
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), "."))
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return safefile.Write(path, func(w io.Writer) error {
		if _, err := wt.WriteTo(w); err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		return nil
	})
}
