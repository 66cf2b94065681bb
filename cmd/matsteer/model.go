package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/extract"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/models"
)

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "fetch and describe models",
		Subcommands: []*cli.Command{
			{
				Name:      "pull",
				Usage:     "download a known model into the cache (verified by sha256)",
				ArgsUsage: "[NAME]",
				Action:    runModelPull,
			},
			{
				Name:   "list",
				Usage:  "list the known models and whether they are cached",
				Action: runModelList,
			},
			{
				Name:      "info",
				Usage:     "show a GGUF model's architecture, sizes, special tokens and hook sites",
				ArgsUsage: "[PATH]",
				Flags: []cli.Flag{
					intIn(&cli.IntFlag{Name: "gpu-layers", Aliases: []string{"ngl"}, Usage: "layers to offload (-1: all; default all with --rpc): shows where they land"}, -1, maxLayers),
					rpcFlag(),
				},
				Action: runModelInfo,
			},
		},
	}
}

func runModelPull(c *cli.Context) error {
	spec := models.Default()
	if c.NArg() > 0 {
		var err error
		if spec, err = models.Lookup(c.Args().First()); err != nil {
			return err
		}
	}
	f := &models.Fetcher{Progress: os.Stderr, Log: os.Stderr}
	path, err := f.Pull(c.Context, spec)
	if err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

func runModelList(c *cli.Context) error {
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tCACHED\tPATH\tDESCRIPTION")
	for _, s := range models.Known() {
		cached := "no"
		if _, err := os.Stat(s.Path()); err == nil {
			cached = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, cached, s.Path(), s.About)
	}
	return w.Flush()
}

func runModelInfo(c *cli.Context) error {
	path := c.Args().First()
	if path == "" {
		var err error
		if path, err = models.DefaultPath(); err != nil {
			return err
		}
	}
	mp, err := modelParams(c)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	sp := m.Special()
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "file\t%s\n", path)
	fmt.Fprintf(w, "name\t%s\n", m.Name())
	fmt.Fprintf(w, "architecture\t%s\n", m.Arch())
	fmt.Fprintf(w, "description\t%s\n", m.Desc())
	fmt.Fprintf(w, "parameters\t%d\n", m.NParams())
	fmt.Fprintf(w, "size\t%.1f MiB\n", float64(m.SizeBytes())/(1<<20))
	fmt.Fprintf(w, "layers\t%d\n", m.NLayer())
	fmt.Fprintf(w, "n_embd\t%d\n", m.NEmbd())
	fmt.Fprintf(w, "vocab\t%d\n", m.NVocab())
	fmt.Fprintf(w, "context (train)\t%d\n", m.NCtxTrain())
	fmt.Fprintf(w, "special tokens\tBOS=%d EOS=%d EOT=%d add_bos=%v\n", sp.BOS, sp.EOS, sp.EOT, sp.AddBOS)
	tmpl := m.ChatTemplate()
	switch {
	case tmpl == "":
		tmpl = "(none)"
	case len(tmpl) > 60:
		tmpl = strings.ReplaceAll(tmpl[:60], "\n", "\\n") + "..."
	default:
		tmpl = strings.ReplaceAll(tmpl, "\n", "\\n")
	}
	fmt.Fprintf(w, "chat template\t%s\n", tmpl)
	if len(mp.RPC) > 0 || mp.GPULayers != 0 {
		fmt.Fprintf(w, "placement\t%s\n", m.Placement())
	}
	cat, err := hooks.Probe(m)
	if err != nil {
		return err
	}
	widths, err := extract.SiteWidths(m, cat)
	if err != nil {
		return err
	}
	// Only n_embd-wide sites can be extracted and steered; the others are
	// listed apart, with their widths.
	var sites, other []string
	for _, s := range cat.Sites() {
		desc := fmt.Sprintf("%s[%s]", s, layerRange(cat.Layers(s)))
		switch wd := widths[s]; {
		case wd == m.NEmbd():
			sites = append(sites, desc)
		case wd == 0:
			other = append(other, desc+" (not row-shaped)")
		default:
			other = append(other, fmt.Sprintf("%s (%d wide)", desc, wd))
		}
	}
	fmt.Fprintf(w, "hook sites\t%s\n", strings.Join(sites, " "))
	if len(other) > 0 {
		fmt.Fprintf(w, "other tensors\t%s (not n_embd wide: cannot be extracted or steered)\n", strings.Join(other, " "))
	}
	return w.Flush()
}

// layerRange formats a sorted layer list: "0..29" when contiguous.
func layerRange(l []int) string {
	if len(l) > 0 && l[len(l)-1]-l[0] == len(l)-1 {
		return fmt.Sprintf("%d..%d", l[0], l[len(l)-1])
	}
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}
