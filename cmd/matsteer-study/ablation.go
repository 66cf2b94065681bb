package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/eval"
)

// The ablations of the chosen mat-steer-selective setting, each a family
// of its own that changes one thing:
//
//   - chatNeutralFamily (-chat-neutral): trained again with the unsteered
//     model's chat replies to held-apart neutral prompts as neutral rows
//     (extract --chat-replies, train --neutral-acts), so that its gates
//     learn what an ordinary answer looks like;
//   - sharpFamily (-gate-shift): the same file with every gate bias
//     lowered (train --init --epochs 0 --gate-shift), so that its gates
//     concentrate on the tokens whose gate logit is highest.
const (
	chatNeutralFamily = "mat-steer-selective-chat"
	sharpFamily       = "mat-steer-selective-sharp"
)

// variant is one ablation's steering file and its calibrated α.
type variant struct {
	family, file string
	alpha        float64
	about        string // what it changes, for study.md
}

// ablation is the ablation result of one seed: the chosen selective file
// and its variants, each at its own calibrated α, tested in one pass per
// task on the main test items (gates included) and checked for retention
// like the main conditions.
type ablation struct {
	variants []variant
	test     map[string]*eval.Report
	ret      *eval.Report
}

// ablationTag marks the ablation's reports with the variants in it
// ("-chat-neutral", "-sharp2", or both).
func (c config) ablationTag() string {
	tag := ""
	if c.chatNeutral != "" {
		tag += "-chat-neutral"
	}
	if c.gateShift > 0 {
		tag += "-sharp" + strconv.FormatFloat(c.gateShift, 'g', -1, 64)
	}
	return tag
}

// ablations runs the ablations for the chosen selective condition of
// best: it makes every variant (same layer and rows; see the families),
// calibrates them under the same budget (or gives them the selective
// file's α without one), and tests and checks them next to the selective
// file, so the paired tests compare each with it on the same items. It
// returns the result and the reports it wrote.
func (c config) ablations(best map[string]choice, specs map[string]fileSpec, test map[string]*eval.Report) (*ablation, []string, error) {
	sel, ok := best[selectiveFamily]
	if !ok {
		return nil, nil, fmt.Errorf("ablations: no %s condition was chosen", selectiveFamily)
	}
	spec, ok := specs[sel.file]
	if !ok {
		return nil, nil, fmt.Errorf("ablations: no training setting for %s", sel.file)
	}
	rows, err := c.extractActs(spec.layer, c.trainItems, c.tokensOf(spec)) // cached: the main extraction
	if err != nil {
		return nil, nil, err
	}
	ab := &ablation{}
	layer := strconv.Itoa(spec.layer)
	if c.chatNeutral != "" {
		neutral := c.path(fmt.Sprintf("acts-chat-replies-L%d.safetensors", spec.layer))
		if err := c.matsteer(neutral, "extract", "--chat-replies", c.chatNeutral, "--reply-tokens", strconv.Itoa(c.genTokens),
			"--layer", layer, "--out", neutral); err != nil {
			return nil, nil, err
		}
		v := variant{family: chatNeutralFamily, file: c.path(fmt.Sprintf("%s-L%d.gguf", chatNeutralFamily, spec.layer)),
			about: fmt.Sprintf("trained again with the unsteered model's greedy chat replies (%d tokens) to the prompts of %s as neutral rows (`matsteer extract --chat-replies`, `matsteer train --neutral-acts`), so the gates are penalised on ordinary answers", c.genTokens, c.chatNeutral)}
		if err := c.matsteer(v.file, append(c.trainArgs(spec, v.file, rows), "--neutral-acts", neutral)...); err != nil {
			return nil, nil, err
		}
		ab.variants = append(ab.variants, v)
	}
	if c.gateShift > 0 {
		s := strconv.FormatFloat(c.gateShift, 'g', -1, 64)
		v := variant{family: sharpFamily, file: c.path(fmt.Sprintf("%s-L%d.gguf", sharpFamily, spec.layer)),
			about: fmt.Sprintf("the selective file with every gate bias lowered by %s (`matsteer train --init FILE --epochs 0 --gate-shift %s`): small gates shrink by about e^-%s, large ones stay, so steering concentrates on the tokens with the highest gate logits", s, s, s)}
		args := []string{"train", "--method", "mat-steer", "--init", sel.file, "--epochs", "0", "--gate-shift", s, "--out", v.file, "--quiet"}
		for _, a := range rows {
			args = append(args, "--acts", a)
		}
		if err := c.matsteer(v.file, args...); err != nil {
			return nil, nil, err
		}
		ab.variants = append(ab.variants, v)
	}
	if len(ab.variants) == 0 {
		return nil, nil, fmt.Errorf("ablations: none asked for")
	}
	tag := c.ablationTag()
	var reports []string
	for i := range ab.variants {
		ab.variants[i].alpha = sel.alpha
	}
	if c.maxKL > 0 {
		out := c.path("calibration" + c.suffix() + tag + ".json")
		var files []string
		for _, v := range ab.variants {
			files = append(files, v.file)
		}
		cal, err := c.calibrate(out, files)
		if err != nil {
			return nil, nil, err
		}
		for i, v := range ab.variants {
			found := false
			for _, k := range cal.Calibrations {
				if k.Path == v.file {
					ab.variants[i].alpha, found = k.Alpha, true
				}
			}
			if !found {
				return nil, nil, fmt.Errorf("ablations: %s has no calibration of %s", out, filepath.Base(v.file))
			}
		}
		reports = append(reports, out)
	}
	// The variants first: the paired tests read "variant − selective".
	var steer []string
	for _, v := range ab.variants {
		steer = append(steer, "--steer", atAlpha(v.file, v.alpha))
	}
	steer = append(steer, "--steer", atAlpha(sel.file, sel.alpha))
	var tr []string
	if ab.test, tr, err = c.testPass(tag, true, steer, test); err != nil {
		return nil, nil, fmt.Errorf("ablations: %w", err)
	}
	reports = append(reports, tr...)
	out := c.path("retention" + c.suffix() + tag + ".json")
	if err := c.matsteer(out, c.retentionArgs(out, steer)...); err != nil {
		return nil, nil, err
	}
	if ab.ret, err = eval.ReadReport(out); err != nil {
		return nil, nil, err
	}
	reports = append(reports, out)
	return ab, reports, nil
}

// writeAblation writes the ablations' section of study.md: what each
// variant changes, the headline table, the paired tests (each variant
// against the selective file among them) and the gate table.
func writeAblation(w io.Writer, ab *ablation) {
	fmt.Fprintf(w, "\n## Ablations of the selective setting\n\n")
	fmt.Fprintf(w, "Each variant changes one thing in the chosen %s file, is calibrated under the same budget and tested on the same items next to it:\n\n", selectiveFamily)
	for _, v := range ab.variants {
		fmt.Fprintf(w, "- %s (%s, α=%.3g): %s.\n", v.family, strings.TrimSuffix(filepath.Base(v.file), ".gguf"), v.alpha, v.about)
	}
	fmt.Fprintln(w)
	writeHeadline(w, ab.test, ab.ret)
	fmt.Fprintln(w)
	writePairedTests(w, ab.test)
	writeGateTable(w, ab.test)
}
