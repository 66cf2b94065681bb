package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/gguf"
	"github.com/matsteer/matsteer/steer"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a steering file (or a llama.cpp control vector)",
		ArgsUsage: "FILE",
		Description: `Prints the site, layer, method, model identity, each attribute's vector norm, gate
weight norm and bias, the pairwise cosines of the vectors, and the training summary
(hyperparameters, data fingerprints, final losses). The file is fully validated.

Examples:
   matsteer inspect steer.gguf
   matsteer inspect --json steer.gguf`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON summary"},
		},
		Action: runInspect,
	}
}

// inspectAttr is the per-attribute summary.
type inspectAttr struct {
	Name      string  `json:"name"`
	Gated     bool    `json:"gated"`
	ThetaNorm float64 `json:"theta_norm"`
	GateWNorm float64 `json:"gate_w_norm,omitempty"`
	GateB     float64 `json:"gate_b,omitempty"`
}

type inspectSummary struct {
	Path         string            `json:"path"`
	Version      int               `json:"version"`
	Method       string            `json:"method"`
	Site         string            `json:"site"`
	Layer        int               `json:"layer"`
	NEmbd        int               `json:"n_embd"`
	ModelArch    string            `json:"model_architecture"`
	ModelName    string            `json:"model_name"`
	ModelID      string            `json:"model_id,omitempty"`
	NormPreserve bool              `json:"norm_preserve"`
	Attributes   []inspectAttr     `json:"attributes"`
	Cosines      [][]float64       `json:"cosines"`
	Training     map[string]string `json:"training,omitempty"`
}

func norm2(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func summarize(path string, f *steer.File) inspectSummary {
	s := inspectSummary{
		Path: path, Version: f.Version, Method: f.Method, Site: f.Site, Layer: f.Layer, NEmbd: f.NEmbd,
		ModelArch: f.ModelArch, ModelName: f.ModelName, ModelID: f.ModelID, NormPreserve: f.NormPreserve,
		Training: f.Training,
	}
	for _, a := range f.Attributes {
		ia := inspectAttr{Name: a.Name, Gated: a.Gated, ThetaNorm: norm2(a.Theta)}
		if a.Gated {
			ia.GateWNorm, ia.GateB = norm2(a.GateW), a.GateB
		}
		s.Attributes = append(s.Attributes, ia)
	}
	n := len(f.Attributes)
	s.Cosines = make([][]float64, n)
	for i := range s.Cosines {
		s.Cosines[i] = make([]float64, n)
		for j := range s.Cosines[i] {
			a, b := f.Attributes[i].Theta, f.Attributes[j].Theta
			na, nb := norm2(a), norm2(b)
			if na == 0 || nb == 0 {
				continue
			}
			dot := 0.0
			for k := range a {
				dot += a[k] * b[k]
			}
			s.Cosines[i][j] = dot / (na * nb)
		}
	}
	return s
}

func runInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("inspect takes one steering file (got %d arguments)", c.NArg())
	}
	path := c.Args().First()
	w := c.App.Writer
	g, err := gguf.ReadFile(path)
	if err != nil {
		return err
	}
	if arch, _ := g.String("general.architecture"); arch == steer.CvecArchitecture {
		return inspectControlVector(w, path, g, c.Bool("json"))
	}
	f, err := steer.FromGGUF(g)
	if err != nil {
		return fmt.Errorf("steering file %s: %w", path, err)
	}
	s := summarize(path, f)
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printSummary(w, s)
	return nil
}

func printSummary(w io.Writer, s inspectSummary) {
	onOff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(w, "steering file %s (format version %d)\n", s.Path, s.Version)
	fmt.Fprintf(w, "  method:            %s\n", s.Method)
	fmt.Fprintf(w, "  site:              %s, layer %d, n_embd %d\n", s.Site, s.Layer, s.NEmbd)
	model := s.ModelArch
	if s.ModelName != "" {
		model += " " + fmt.Sprintf("%q", s.ModelName)
	}
	if s.ModelID != "" {
		model += " (" + s.ModelID + ")"
	}
	fmt.Fprintf(w, "  model:             %s\n", model)
	fmt.Fprintf(w, "  norm preservation: %s\n", onOff[s.NormPreserve])
	fmt.Fprintf(w, "\nattributes (%d):\n", len(s.Attributes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tname\tgated\t|theta|\t|gate_w|\tgate_b")
	for i, a := range s.Attributes {
		if a.Gated {
			fmt.Fprintf(tw, "  %d\t%s\tyes\t%.4g\t%.4g\t%+.4g\n", i, a.Name, a.ThetaNorm, a.GateWNorm, a.GateB)
		} else {
			fmt.Fprintf(tw, "  %d\t%s\tno\t%.4g\t-\t-\n", i, a.Name, a.ThetaNorm)
		}
	}
	tw.Flush()
	if len(s.Attributes) > 1 {
		fmt.Fprintln(w, "\npairwise cosine of the vectors:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, a := range s.Attributes {
			fmt.Fprintf(tw, "%s\t", a.Name)
		}
		fmt.Fprintln(tw)
		for i, row := range s.Cosines {
			fmt.Fprintf(tw, "  %s\t", s.Attributes[i].Name)
			for _, v := range row {
				fmt.Fprintf(tw, "%+.3f\t", v)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	if len(s.Training) > 0 {
		fmt.Fprintln(w, "\ntraining:")
		keys := make([]string, 0, len(s.Training))
		for k := range s.Training {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, k := range keys {
			fmt.Fprintf(tw, "  %s\t%s\n", k, s.Training[k])
		}
		tw.Flush()
	}
}

func inspectControlVector(w io.Writer, path string, g *gguf.File, asJSON bool) error {
	type dir struct {
		Name string  `json:"name"`
		N    int     `json:"n_embd"`
		Norm float64 `json:"norm"`
	}
	var dirs []dir
	for _, t := range g.Tensors {
		vals, err := t.Float32s()
		if err != nil {
			return fmt.Errorf("control vector %s: %w", path, err)
		}
		v := make([]float64, len(vals))
		for i, x := range vals {
			v[i] = float64(x)
		}
		dirs = append(dirs, dir{t.Name, len(vals), norm2(v)})
	}
	hint, _ := g.String("controlvector.model_hint")
	layers, _ := g.Int("controlvector.layer_count")
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"path": path, "architecture": steer.CvecArchitecture, "model_hint": hint, "layer_count": layers, "directions": dirs})
	}
	fmt.Fprintf(w, "llama.cpp control vector %s\n  model hint: %s\n  layer_count: %d\n  directions (direction.N is added to the output of block N, l_out-N):\n", path, hint, layers)
	for _, d := range dirs {
		fmt.Fprintf(w, "    %-14s n_embd %d  norm %.4g\n", d.Name, d.N, d.Norm)
	}
	fmt.Fprintf(w, "convert with: matsteer import-cvec %s OUT.gguf\n", strings.TrimSpace(path))
	return nil
}
