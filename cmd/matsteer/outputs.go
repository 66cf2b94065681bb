package main

// Output files: every command checks its outputs before it starts work
// (safefile.CheckOutputs) and writes them atomically (safefile).

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"gonum.org/v1/plot"

	"github.com/matsteer/matsteer/internal/plotfile"
	"github.com/matsteer/matsteer/internal/safefile"
)

// checkPlotPath refuses a --plot path whose extension names no supported
// format, before anything is written.
func checkPlotPath(flag, path string) error {
	if err := plotfile.Check(path); err != nil {
		return fmt.Errorf("%s %w", flag, err)
	}
	return nil
}

// writePlot renders p in the format of path's extension, atomically.
func writePlot(p *plot.Plot, path string) error { return plotfile.Write(p, path) }

// flagOutputs lists the outputs named by the given string flags that were
// given (an explicitly empty value is kept, so it is refused).
func flagOutputs(c *cli.Context, flags ...string) []safefile.Output {
	var out []safefile.Output
	for _, f := range flags {
		if c.IsSet(f) || c.String(f) != "" {
			out = append(out, safefile.Output{Flag: "--" + f, Path: c.String(f)})
		}
	}
	return out
}

// flagInputs lists the input paths named by the given string or string
// slice flags.
func flagInputs(c *cli.Context, flags ...string) []safefile.Input {
	var in []safefile.Input
	for _, name := range flags {
		var paths []string
		for _, f := range c.Command.Flags {
			switch f := f.(type) {
			case *cli.StringSliceFlag:
				if f.Name == name {
					paths = c.StringSlice(name)
				}
			case *cli.StringFlag:
				if f.Name == name && c.String(name) != "" {
					paths = []string{c.String(name)}
				}
			}
		}
		for _, p := range paths {
			in = append(in, safefile.Input{Flag: "--" + name, Path: p})
		}
	}
	return in
}

// modelInput is the model file as an input, when the command loads one.
func modelInput(c *cli.Context) []safefile.Input {
	if p, err := modelPath(c); err == nil {
		return []safefile.Input{{Flag: "--model", Path: p}}
	}
	return nil
}
