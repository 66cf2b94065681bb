package steer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// trainWarm is Train with cfg.Init set (see Train, "Warm start").
func trainWarm(ctx context.Context, data []AttributeData, cfg TrainConfig) (*File, *TrainLog, error) {
	init := cfg.Init
	if err := checkInit(init, data, &cfg); err != nil {
		return nil, nil, fmt.Errorf("train: init file: %w", err)
	}
	// The init file's attributes with rows first, in file order, then the
	// new ones in data order.
	byName := make(map[string]int, len(data))
	for i, a := range data {
		byName[a.Name] = i
	}
	inFile := make(map[string]bool, len(init.Attributes))
	var ordered []AttributeData
	var refined, kept, added []string
	for _, a := range init.Attributes {
		inFile[a.Name] = true
		if i, ok := byName[a.Name]; ok {
			ordered = append(ordered, data[i])
			refined = append(refined, a.Name)
		} else {
			kept = append(kept, a.Name)
		}
	}
	for _, a := range data {
		if !inFile[a.Name] {
			ordered = append(ordered, a)
			added = append(added, a.Name)
		}
	}
	var f *File
	var log *TrainLog
	var err error
	if len(ordered) == 0 {
		// No rows: every attribute is kept (and shifted, below).
		if f, log, err = untrained(init, cfg); err != nil {
			return nil, nil, err
		}
	} else {
		ws := &warmStart{m: newParams(len(ordered), init.NEmbd), has: make([]bool, len(ordered))}
		for _, a := range init.Attributes {
			if i := slices.Index(refined, a.Name); i >= 0 {
				copy(ws.m.thetaT(i), a.Theta)
				copy(ws.m.wT(i), a.GateW)
				ws.m.b()[i] = a.GateB
				ws.has[i] = true
			}
		}
		if f, log, err = train(ctx, ordered, cfg, ws); err != nil {
			return nil, nil, err
		}
	}
	// Reassemble in the init file's order, with the kept attributes.
	trained := f.Attributes
	f.Attributes = f.Attributes[:0:0]
	for _, a := range init.Attributes {
		if i := slices.Index(refined, a.Name); i >= 0 {
			f.Attributes = append(f.Attributes, trained[i])
		} else {
			f.Attributes = append(f.Attributes, shifted(cloneAttribute(a), cfg.GateShift))
		}
	}
	f.Attributes = append(f.Attributes, trained[len(refined):]...)
	if err := f.Validate(); err != nil {
		return nil, nil, fmt.Errorf("train: warm start: %w", err)
	}
	log.Refined, log.Added, log.Kept = refined, added, kept
	f.Training["init.refined"] = strings.Join(refined, ",")
	f.Training["init.added"] = strings.Join(added, ",")
	f.Training["init.kept"] = strings.Join(kept, ",")
	return f, log, nil
}

// shifted returns a with its gate bias lowered by shift (when gated): the
// gate shift of a training applies to the attributes it keeps unchanged
// too, so that "every gate" holds whatever rows were given.
func shifted(a Attribute, shift float64) Attribute {
	if a.Gated {
		a.GateB -= shift
	}
	return a
}

// untrained is the result of a warm start without rows, before the init
// file's attributes are copied in: zero epochs only (nothing to train),
// the file's settings, and the gate shift recorded.
func untrained(init *File, cfg TrainConfig) (*File, *TrainLog, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if cfg.Epochs != 0 {
		return nil, nil, fmt.Errorf("train: no rows to train on: a warm start without data takes zero epochs (it only applies the gate shift)")
	}
	f := &File{
		Version: FileVersion, Site: init.Site, Layer: init.Layer, NEmbd: init.NEmbd,
		ModelArch: init.ModelArch, ModelName: init.ModelName, ModelID: init.ModelID,
		Method: init.Method, NormPreserve: init.NormPreserve,
		Training: map[string]string{"method": init.Method, "epochs": "0", "epochs_run": "0", "norm_preserve": strconv.FormatBool(init.NormPreserve)},
	}
	if cfg.GateShift > 0 {
		f.Training["gate_shift"] = fmtF(cfg.GateShift)
	}
	return f, &TrainLog{Method: init.Method, Seed: cfg.Seed, NormPreserve: init.NormPreserve, Warnings: []string{}}, nil
}

// checkInit checks that init can start training on data with cfg, and
// fills cfg's empty site and model fields from it.
func checkInit(init *File, data []AttributeData, cfg *TrainConfig) error {
	if err := init.Validate(); err != nil {
		return err
	}
	if init.Method != MethodMATSteer {
		return fmt.Errorf("method %s: only a %s file can be refined", init.Method, MethodMATSteer)
	}
	if init.NormPreserve != cfg.NormPreserve {
		return fmt.Errorf("norm preservation %s in the file, %s in this training: it decides what the file does at inference, so a refined file keeps it", onOff(init.NormPreserve), onOff(cfg.NormPreserve))
	}
	seen := make(map[string]bool, len(data))
	for _, a := range data {
		if seen[a.Name] {
			return fmt.Errorf("attribute %q given twice in the data", a.Name)
		}
		seen[a.Name] = true
		for _, rows := range [][][]float64{a.Pos, a.Neg} {
			if len(rows) > 0 && len(rows[0]) != init.NEmbd {
				return fmt.Errorf("n_embd %d, but attribute %q has rows of %d values", init.NEmbd, a.Name, len(rows[0]))
			}
		}
	}
	for _, a := range init.Attributes {
		if !a.Gated && seen[a.Name] {
			return fmt.Errorf("attribute %q is not gated: it cannot be refined", a.Name)
		}
	}
	if cfg.Site == "" {
		cfg.Site, cfg.Layer = init.Site, init.Layer
	} else if cfg.Site != init.Site || cfg.Layer != init.Layer {
		return fmt.Errorf("site %s layer %d, but the rows are from site %s layer %d", init.Site, init.Layer, cfg.Site, cfg.Layer)
	}
	for _, m := range []struct {
		what      string
		cfg, file *string
	}{{"model architecture", &cfg.ModelArch, &init.ModelArch}, {"model name", &cfg.ModelName, &init.ModelName}, {"model id", &cfg.ModelID, &init.ModelID}} {
		switch {
		case *m.cfg == "":
			*m.cfg = *m.file
		case *m.file != "" && *m.cfg != *m.file:
			return fmt.Errorf("%s %q, but the rows are from %q", m.what, *m.file, *m.cfg)
		}
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func cloneAttribute(a Attribute) Attribute {
	a.Theta = slices.Clone(a.Theta)
	a.GateW = slices.Clone(a.GateW)
	return a
}
