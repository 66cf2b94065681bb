package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/gguf"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/steer"
)

func exportCvecCommand() *cli.Command {
	return &cli.Command{
		Name:      "export-cvec",
		Usage:     "export a gate-free steering file as a llama.cpp control vector",
		ArgsUsage: "IN.gguf OUT.gguf",
		Description: `Writes one tensor direction.L (L = the steering file's layer) holding the sum of
global * strength_t * theta_t over the attributes, with general.architecture
"controlvector" and controlvector.model_hint = the model architecture. llama.cpp adds
direction.N to the output of block N (l_out-N), so only site l_out and layers >= 1 can be
exported. Use it with: llama-cli --control-vector OUT.gguf (or --control-vector-scaled).

Gated attributes (mat-steer) are refused: a control vector steers every token. Pass
--force-ungated to export the ungated sum anyway. Files with norm preservation are refused
unless --ignore-norm-preserve (llama.cpp only adds the vector).

Examples:
   matsteer export-cvec meandiff.gguf meandiff.cvec.gguf
   matsteer export-cvec --strength toxigen=2 --global 0.5 meandiff.gguf out.gguf
   matsteer export-cvec --force-ungated --ignore-norm-preserve steer.gguf ungated.gguf`,
		Flags: []cli.Flag{
			floatIn(&cli.Float64Flag{Name: "global", Value: 1, Usage: "global strength (alpha)"}, closed(0, steer.MaxStrength)),
			&cli.StringSliceFlag{Name: "strength", Usage: "per-attribute strength name=value (repeatable or comma-separated)"},
			&cli.BoolFlag{Name: "force-ungated", Usage: "export gated attributes as if every gate were 1"},
			&cli.BoolFlag{Name: "ignore-norm-preserve", Usage: "export a norm-preserving file as a plain additive vector"},
		},
		Action: runExportCvec,
	}
}

func runExportCvec(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("export-cvec takes IN and OUT (got %d arguments)", c.NArg())
	}
	in, out := c.Args().Get(0), c.Args().Get(1)
	if err := safefile.CheckOutputs([]safefile.Output{{Flag: "OUT", Path: out}}, []safefile.Input{{Flag: "IN", Path: in}}); err != nil {
		return err
	}
	f, err := steer.ReadFile(in)
	if err != nil {
		return err
	}
	strengths, err := steer.ParseStrengths(c.StringSlice("strength"))
	if err != nil {
		return fmt.Errorf("--strength: %w", err)
	}
	g, err := steer.ExportControlVector(f, steer.ExportOptions{
		Apply:              steer.ApplyOptions{Global: c.Float64("global"), Strengths: strengths},
		ForceUngated:       c.Bool("force-ungated"),
		IgnoreNormPreserve: c.Bool("ignore-norm-preserve"),
	})
	if err != nil {
		return fmt.Errorf("export %s: %w", in, err)
	}
	if err := g.WriteFile(out); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wrote %s: direction.%d (n_embd %d, model hint %q) from %d attributes of %s\n",
		out, f.Layer, f.NEmbd, f.ModelArch, len(f.Attributes), in)
	return nil
}

func importCvecCommand() *cli.Command {
	return &cli.Command{
		Name:      "import-cvec",
		Usage:     "convert llama.cpp control vectors into an ungated steering file",
		ArgsUsage: "IN.gguf [IN.gguf...] OUT.gguf",
		Description: `Each control vector becomes one ungated attribute (applied to every token) at site
l_out, layer N for its tensor direction.N (all-zero directions are ignored; when a file
has several non-zero layers, choose one with --layer). Attribute names come from --name
(in the order of the inputs) or the file names. All inputs must agree on layer and
n_embd; the model architecture is taken from controlvector.model_hint.

Examples:
   matsteer import-cvec happy.gguf steer-happy.gguf
   matsteer import-cvec --name honesty --name calm --layer 14 a.gguf b.gguf steer.gguf`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "name", Usage: "attribute name for each input, in order (default: file name)"},
			intIn(&cli.IntFlag{Name: "layer", Usage: "take direction.N for this layer (default: the only non-zero one)"}, 0, maxLayers),
		},
		Action: runImportCvec,
	}
}

func runImportCvec(c *cli.Context) error {
	if c.NArg() < 2 {
		return fmt.Errorf("import-cvec takes one or more inputs and an output (got %d arguments)", c.NArg())
	}
	args := c.Args().Slice()
	ins, out := args[:len(args)-1], args[len(args)-1]
	inputs := make([]safefile.Input, len(ins))
	for i, in := range ins {
		inputs[i] = safefile.Input{Flag: "IN", Path: in}
	}
	if err := safefile.CheckOutputs([]safefile.Output{{Flag: "OUT", Path: out}}, inputs); err != nil {
		return err
	}
	names := c.StringSlice("name")
	if len(names) > 0 && len(names) != len(ins) {
		return fmt.Errorf("%d --name values for %d inputs", len(names), len(ins))
	}
	var files []*steer.File
	for i, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		if len(names) > 0 {
			name = names[i]
		}
		g, err := gguf.ReadFile(in)
		if err != nil {
			return err
		}
		f, err := steer.ImportControlVector(g, steer.ImportOptions{Name: name, Layer: c.Int("layer")})
		if err != nil {
			return fmt.Errorf("import %s: %w", in, err)
		}
		files = append(files, f)
	}
	f, err := steer.MergeFiles(files)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := f.WriteFile(out); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wrote %s: %d ungated attributes (%s), site %s layer %d, n_embd %d\n",
		out, len(f.Attributes), strings.Join(f.AttributeNames(), ", "), f.Site, f.Layer, f.NEmbd)
	return nil
}
