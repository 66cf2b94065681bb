package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// steerFlags select steering files and their strengths.
func steerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "steer", Usage: "steering `FILE` from matsteer train (repeatable; one per site and layer)"},
		&cli.StringSliceFlag{Name: "strength", Usage: "per-attribute strength, NAME=X[,NAME=X...] (default 1; 0 switches an attribute off)"},
		floatIn(&cli.Float64Flag{Name: "global", Value: 1, Usage: "global strength α multiplying every attribute"}, closed(0, steer.MaxStrength)),
		steerSpecialFlag(),
	}
}

// steerSpecialFlag is --steer-special: by default rows of control tokens
// and chat-template scaffolding are left unsteered (intervene.SpecialTokens).
func steerSpecialFlag() cli.Flag {
	return &cli.BoolFlag{Name: "steer-special", Usage: "steer control tokens (<|im_start|>, BOS, ...) and the chat template's role headers too (default: left unsteered)"}
}

// loadInterventions reads the --steer files and checks them against the
// model. Every --strength name must belong to one of the files.
func loadInterventions(c *cli.Context, m *llama.Model, cat *hooks.Catalog) ([]*intervene.Intervention, error) {
	paths := c.StringSlice("steer")
	if len(paths) == 0 {
		if len(c.StringSlice("strength")) > 0 {
			return nil, fmt.Errorf("--strength given without --steer")
		}
		return nil, nil
	}
	strengths, err := steer.ParseStrengths(c.StringSlice("strength"))
	if err != nil {
		return nil, err
	}
	files := make([]*steer.File, len(paths))
	for i, path := range paths {
		if files[i], err = steer.ReadFile(path); err != nil {
			return nil, err
		}
	}
	own, err := strengthsByFile(strengths, files)
	if err != nil {
		return nil, err
	}
	points := map[hooks.Point]string{}
	var ivs []*intervene.Intervention
	for i, path := range paths {
		iv, err := intervene.New(files[i], steer.ApplyOptions{Global: c.Float64("global"), Strengths: own[i], SteerSpecial: c.Bool("steer-special")}, m, cat)
		if err != nil {
			return nil, fmt.Errorf("steering file %s: %w", path, err)
		}
		if prev, dup := points[iv.Point()]; dup {
			return nil, fmt.Errorf("steering files %s and %s both steer %s; train their attributes into one file", prev, path, iv.Point())
		}
		points[iv.Point()] = path
		ivs = append(ivs, iv)
	}
	return ivs, nil
}

// strengthsByFile gives each steering file the --strength entries that name
// its attributes. An entry that names no file's attribute is an error.
func strengthsByFile(strengths map[string]float64, files []*steer.File) ([]map[string]float64, error) {
	used := map[string]bool{}
	own := make([]map[string]float64, len(files))
	for i, f := range files {
		own[i] = map[string]float64{}
		for _, a := range f.AttributeNames() {
			if s, ok := strengths[a]; ok {
				own[i][a] = s
				used[a] = true
			}
		}
	}
	var unknown []string
	for name := range strengths {
		if !used[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("--strength: no steering file has attribute(s) %s", strings.Join(unknown, ", "))
	}
	return own, nil
}
