package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/matsteer/matsteer/eval"
)

// chatNeutralFamily names the chat-reply ablation: the chosen
// mat-steer-selective setting trained again with the unsteered model's
// chat replies to -chat-neutral's prompts as neutral rows (extract
// --chat-replies, train --neutral-acts), so that its gates learn what an
// ordinary answer looks like.
const chatNeutralFamily = "mat-steer-selective-chat"

// chatNeutralTag marks the ablation's reports.
const chatNeutralTag = "-chat-neutral"

// ablation is the result of the chat-reply ablation of one seed: the
// chosen selective file and its chat-reply variant, each at its own
// calibrated α, tested on the main test items (gates included) and
// checked for retention like the main conditions.
type ablation struct {
	file  string // the variant's steering file
	alpha float64
	test  map[string]*eval.Report
	ret   *eval.Report
}

// chatNeutralFile is the variant's steering file at layer l.
func chatNeutralFile(l int) string { return fmt.Sprintf("%s-L%d.gguf", chatNeutralFamily, l) }

// chatNeutralAblation runs the ablation for the chosen selective
// condition of best: the neutral rows (the unsteered model's replies to
// c.chatNeutral at the chosen layer), the variant trained with them and
// otherwise the same setting and rows, its calibration under the same
// budget (or the selective file's α without one), and one test pass per
// task and one retention pass with the selective file and the variant
// side by side, so the paired tests compare them on the same items. It
// returns the result and the reports it wrote.
func (c config) chatNeutralAblation(best map[string]choice, specs map[string]fileSpec, test map[string]*eval.Report) (*ablation, []string, error) {
	sel, ok := best[selectiveFamily]
	if !ok {
		return nil, nil, fmt.Errorf("chat-reply ablation: no %s condition was chosen", selectiveFamily)
	}
	spec, ok := specs[sel.file]
	if !ok {
		return nil, nil, fmt.Errorf("chat-reply ablation: no training setting for %s", sel.file)
	}
	neutral := c.path(fmt.Sprintf("acts-chat-replies-L%d.safetensors", spec.layer))
	if err := c.matsteer(neutral, "extract", "--chat-replies", c.chatNeutral, "--reply-tokens", strconv.Itoa(c.genTokens),
		"--layer", strconv.Itoa(spec.layer), "--out", neutral); err != nil {
		return nil, nil, err
	}
	rows, err := c.extractActs(spec.layer, c.trainItems, c.tokensOf(spec)) // cached: the main extraction
	if err != nil {
		return nil, nil, err
	}
	ab := &ablation{file: c.path(chatNeutralFile(spec.layer)), alpha: sel.alpha, test: map[string]*eval.Report{}}
	args := append(c.trainArgs(spec, ab.file, rows), "--neutral-acts", neutral)
	if err := c.matsteer(ab.file, args...); err != nil {
		return nil, nil, err
	}
	var reports []string
	if c.maxKL > 0 {
		out := c.path("calibration" + c.suffix() + chatNeutralTag + ".json")
		cal, err := c.calibrate(out, []string{ab.file})
		if err != nil {
			return nil, nil, err
		}
		if len(cal.Calibrations) != 1 {
			return nil, nil, fmt.Errorf("chat-reply ablation: %s has %d calibrations, want 1", out, len(cal.Calibrations))
		}
		ab.alpha = cal.Calibrations[0].Alpha
		reports = append(reports, out)
	}
	steer := []string{"--steer", atAlpha(sel.file, sel.alpha), "--steer", atAlpha(ab.file, ab.alpha)}
	for _, task := range tasks {
		out := c.path(c.testName(task, chatNeutralTag))
		args := []string{"eval", "--task", task, "--data", c.data, "--split", "test", "--limit", strconv.Itoa(c.testItems[task]),
			"--gates", "--gate-limit", "120", "--out", out}
		args = append(args, c.seedArgs()...)
		args = append(args, steer...)
		if err := c.matsteer(out, args...); err != nil {
			return nil, nil, err
		}
		rep, err := eval.ReadReport(out)
		if err != nil {
			return nil, nil, err
		}
		if rep.NItems != test[task].NItems {
			return nil, nil, fmt.Errorf("chat-reply ablation: %s has %d test items, the main test %d", out, rep.NItems, test[task].NItems)
		}
		reports = append(reports, out)
		ab.test[task] = rep
	}
	out := c.path("retention" + c.suffix() + chatNeutralTag + ".json")
	if err := c.matsteer(out, c.retentionArgs(out, steer)...); err != nil {
		return nil, nil, err
	}
	if ab.ret, err = eval.ReadReport(out); err != nil {
		return nil, nil, err
	}
	reports = append(reports, out)
	return ab, reports, nil
}

// writeAblation writes the ablation's section of study.md: what changed,
// the headline table, the paired tests (the variant against the selective
// file among them) and the gate table.
func (c config) writeAblation(w io.Writer, ab *ablation) {
	fmt.Fprintf(w, "\n## Ablation: chat replies as neutral rows\n\n")
	fmt.Fprintf(w, "%s is the chosen %s setting trained again with one change: the unsteered model's greedy chat replies (%d tokens) to the prompts of %s are added as neutral rows (`matsteer extract --chat-replies`, `matsteer train --neutral-acts`), so the gates are penalised on ordinary answers. It is calibrated under the same budget (α=%.3g; file %s) and tested on the same items, next to the selective file.\n\n",
		chatNeutralFamily, selectiveFamily, c.genTokens, c.chatNeutral, ab.alpha, filepath.Base(ab.file))
	writeHeadline(w, ab.test, ab.ret)
	fmt.Fprintln(w)
	writePairedTests(w, ab.test)
	writeGateTable(w, ab.test)
}
