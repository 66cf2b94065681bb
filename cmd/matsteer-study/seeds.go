package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/matsteer/matsteer/eval"
)

// seedValue is the primary metric of task for method family fam (the
// unsteered model: eval.NoneName) in one run: from the main test, else
// from the ablations' pass.
func seedValue(r *seedRun, fam, task string) (float64, bool) {
	reports := []*eval.Report{r.test[task]}
	if r.abl != nil {
		reports = append(reports, r.abl.test[task])
	}
	for _, rep := range reports {
		for _, m := range rep.Methods {
			if fam == eval.NoneName && m.Name == eval.NoneName || m.Steering != nil && familyOf(m.Steering) == fam {
				return m.Metric(primary[task])
			}
		}
	}
	return 0, false
}

// meanSD returns the mean and the sample standard deviation (0 for one
// value).
func meanSD(xs []float64) (mean, sd float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(xs)-1))
}

// writeSeedSummary writes summary.md: the primary test metrics of every
// method per split seed and their mean ± standard deviation across seeds,
// what each seed chose, the stage times, and each seed's headline table.
func writeSeedSummary(c config, runs []*seedRun) error {
	path := filepath.Join(c.out, "summary.md")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := seedSummary(f, runs); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", path)
	return nil
}

func seedSummary(w io.Writer, runs []*seedRun) error {
	if len(runs) == 0 {
		return fmt.Errorf("no seeds")
	}
	fmt.Fprintf(w, "# MAT-Steer study across split seeds\n\n")
	// The program's base name: `go run` (make eval) runs it from a
	// temporary directory.
	fmt.Fprintf(w, "Command: `%s`\n\n", strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " "))
	var seeds []string
	for _, r := range runs {
		seeds = append(seeds, fmt.Sprint(r.seed))
	}
	fmt.Fprintf(w, "Split seeds %s: each seed repeats the whole protocol (split, extraction, training, calibration, selection on dev, test); per-seed summaries: ", strings.Join(seeds, ", "))
	for i, r := range runs {
		if i > 0 {
			fmt.Fprintf(w, ", ")
		}
		fmt.Fprintf(w, "[seed %d](seed-%d/study.md)", r.seed, r.seed)
	}
	fmt.Fprintf(w, ".\n\n")
	// Families: the unsteered model, then every method any seed chose,
	// then the ablations.
	fams := []string{eval.NoneName}
	seen := map[string]bool{}
	var variants []string
	for _, r := range runs {
		for _, fam := range sortedKeys(r.best) {
			if !seen[fam] {
				seen[fam] = true
				fams = append(fams, fam)
			}
		}
		if r.abl != nil {
			for _, v := range r.abl.variants {
				if !seen[v.family] {
					seen[v.family] = true
					variants = append(variants, v.family)
				}
			}
		}
	}
	fams = append(fams, variants...)
	if len(runs) == 1 {
		fmt.Fprintf(w, "Primary test metrics (one seed: no spread; run -seeds 0,1,2 for one).\n\n")
	} else {
		fmt.Fprintf(w, "Primary test metrics: mean ± standard deviation across seeds (each seed's value in parentheses, in seed order).\n\n")
	}
	fmt.Fprintf(w, "| method |")
	for _, task := range tasks {
		fmt.Fprintf(w, " %s %s |", task, primary[task])
	}
	fmt.Fprintf(w, " average |\n|---|")
	for range tasks {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|\n")
	for _, fam := range fams {
		fmt.Fprintf(w, "| %s |", fam)
		avgs := make([]float64, len(runs))
		complete := true
		for _, task := range tasks {
			var xs []float64
			var per []string
			for i, r := range runs {
				v, ok := seedValue(r, fam, task)
				if !ok {
					per = append(per, "-")
					complete = false
					continue
				}
				xs = append(xs, v)
				per = append(per, fmt.Sprintf("%.3f", v))
				avgs[i] += v / float64(len(tasks))
			}
			cell := "-"
			switch {
			case len(runs) == 1 && len(xs) == 1:
				cell = fmt.Sprintf("%.3f", xs[0]) // one seed: no spread
			case len(xs) > 0:
				m, sd := meanSD(xs)
				cell = fmt.Sprintf("%.3f ± %.3f (%s)", m, sd, strings.Join(per, ", "))
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		if complete && len(runs) == 1 {
			fmt.Fprintf(w, " %.3f |\n", avgs[0])
		} else if complete {
			m, sd := meanSD(avgs)
			var per []string
			for _, a := range avgs {
				per = append(per, fmt.Sprintf("%.3f", a))
			}
			fmt.Fprintf(w, " %.3f ± %.3f (%s) |\n", m, sd, strings.Join(per, ", "))
		} else {
			fmt.Fprintf(w, " - |\n")
		}
	}
	fmt.Fprintf(w, "\nChosen on dev, per seed:\n\n")
	for _, r := range runs {
		var chosen []string
		for _, fam := range sortedKeys(r.best) {
			chosen = append(chosen, fmt.Sprintf("%s = %s at α=%.3g", fam, strings.TrimSuffix(filepath.Base(r.best[fam].file), ".gguf"), r.best[fam].alpha))
		}
		if r.abl != nil {
			for _, v := range r.abl.variants {
				chosen = append(chosen, fmt.Sprintf("ablation %s = %s at α=%.3g", v.family, strings.TrimSuffix(filepath.Base(v.file), ".gguf"), v.alpha))
			}
		}
		fmt.Fprintf(w, "- seed %d: %s\n", r.seed, strings.Join(chosen, "; "))
	}
	fmt.Fprintf(w, "\nStage times:\n\n")
	for _, r := range runs {
		fmt.Fprintf(w, "- seed %d: ", r.seed)
		writeStageTimes(w, r.stages)
		fmt.Fprintf(w, "\n")
	}
	for _, r := range runs {
		fmt.Fprintf(w, "\n## Seed %d: test results\n\n", r.seed)
		writeHeadline(w, r.test, r.ret)
	}
	return nil
}
