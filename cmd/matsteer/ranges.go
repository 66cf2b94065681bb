package main

// Numeric flag ranges: every numeric flag states its range in its usage
// text and is checked when it is given, before the command does any work.

import (
	"fmt"
	"math"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/internal/safefile"
)

// Limits shared by several commands.
const (
	maxCount   = 1_000_000_000 // --limit and friends
	maxThreads = 1024
	maxBatch   = 1 << 16 // tokens per decode
	maxSeqs    = 256     // llama.cpp's LLAMA_MAX_SEQ
	maxLayers  = 1 << 16
	ctxStep    = 256     // llama.cpp sizes contexts in steps of 256 tokens
	maxCtx     = 1 << 22 // static bound; the model's training context bounds it further
)

// intIn appends the range lo..hi to f's usage and refuses values outside it.
func intIn(f *cli.IntFlag, lo, hi int) *cli.IntFlag {
	f.Usage += fmt.Sprintf(" (range %s)", intRangeText(lo, hi))
	name := f.Name
	f.Action = func(_ *cli.Context, v int) error { return checkInt(name, v, lo, hi) }
	return f
}

func checkInt(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s %d: out of range, want %s", flagSpelling(name), v, intRangeText(lo, hi))
	}
	return nil
}

// flagSpelling is how a user types the flag: -n, --threads.
func flagSpelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func intRangeText(lo, hi int) string { return fmtInt(lo) + ".." + fmtInt(hi) }

// fmtInt writes large round numbers compactly (1e9, 65536).
func fmtInt(v int) string {
	if v >= 1_000_000 && v%1_000_000 == 0 {
		m, e := v, 0
		for m%10 == 0 {
			m, e = m/10, e+1
		}
		if m < 10 {
			return strconv.Itoa(m) + "e" + strconv.Itoa(e)
		}
	}
	return strconv.Itoa(v)
}

// floatRange is an interval of accepted values; open ends exclude the bound.
type floatRange struct {
	lo, hi         float64
	loOpen, hiOpen bool
}

func (r floatRange) String() string {
	l, h := "[", "]"
	if r.loOpen {
		l = "("
	}
	if r.hiOpen {
		h = ")"
	}
	return l + strconv.FormatFloat(r.lo, 'g', -1, 64) + ", " + strconv.FormatFloat(r.hi, 'g', -1, 64) + h
}

func (r floatRange) contains(v float64) bool {
	if math.IsNaN(v) || v < r.lo || v > r.hi {
		return false
	}
	return !(r.loOpen && v == r.lo) && !(r.hiOpen && v == r.hi)
}

func (r floatRange) check(name string, v float64) error {
	if !r.contains(v) {
		return fmt.Errorf("%s %v: out of range, want a number in %s", flagSpelling(name), v, r)
	}
	return nil
}

// closed is [lo, hi]; leftOpen is (lo, hi]; rightOpen is [lo, hi).
func closed(lo, hi float64) floatRange    { return floatRange{lo: lo, hi: hi} }
func leftOpen(lo, hi float64) floatRange  { return floatRange{lo: lo, hi: hi, loOpen: true} }
func rightOpen(lo, hi float64) floatRange { return floatRange{lo: lo, hi: hi, hiOpen: true} }

// floatIn appends r to f's usage and refuses values outside it (NaN and
// infinities included).
func floatIn(f *cli.Float64Flag, r floatRange) *cli.Float64Flag {
	f.Usage += " (range " + r.String() + ")"
	name := f.Name
	f.Action = func(_ *cli.Context, v float64) error { return r.check(name, v) }
	return f
}

// floatsIn is floatIn for every value of a slice flag.
func floatsIn(f *cli.Float64SliceFlag, r floatRange) *cli.Float64SliceFlag {
	f.Usage += " (each in " + r.String() + ")"
	name := f.Name
	f.Action = func(_ *cli.Context, vs []float64) error {
		for _, v := range vs {
			if err := r.check(name, v); err != nil {
				return err
			}
		}
		return nil
	}
	return f
}

// intRange and a floatRange are the ranges withRanges applies by flag name.
type intRange struct{ lo, hi int }

// withRanges gives the named flags of cmd their ranges (for commands whose
// flag lists live elsewhere).
func withRanges(cmd *cli.Command, ranges map[string]any) *cli.Command {
	for _, f := range cmd.Flags {
		switch f := f.(type) {
		case *cli.IntFlag:
			if r, ok := ranges[f.Name].(intRange); ok {
				intIn(f, r.lo, r.hi)
			}
		case *cli.Float64Flag:
			if r, ok := ranges[f.Name].(floatRange); ok {
				floatIn(f, r)
			}
		}
	}
	return cmd
}

// generateRanges are generate's own numeric flags (those of modelFlags
// and steerFlags have theirs).
var generateRanges = map[string]any{
	"n":              intRange{1, maxCtx},
	"top-k":          intRange{0, 1 << 20},
	"temp":           closed(0, 100),
	"top-p":          closed(0, 1),
	"min-p":          closed(0, 1),
	"repeat-penalty": closed(0, 10),
}

// checkGenerateOutputs checks --audit before the model loads (generate
// used to find a bad path only after generating).
func checkGenerateOutputs(c *cli.Context) error {
	if !c.IsSet("audit") {
		return nil
	}
	return safefile.CheckOutputs(flagOutputs(c, "audit"), append(flagInputs(c, "steer"), modelInput(c)...))
}
