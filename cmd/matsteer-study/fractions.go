package main

import (
	"fmt"
	"image/color"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/matsteer/matsteer/acts"
	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/eval"
	"github.com/matsteer/matsteer/internal/safefile"
)

// efficiency is the data-efficiency result of one seed: every method's
// chosen setting trained on fractions of the training items, each at its
// own calibrated α, on the same test items.
type efficiency struct {
	fractions []float64            // ascending; the last is 1 (the main result)
	items     []map[string]int     // training items per task at each fraction
	fams      []string             // method families, sorted
	cells     map[string][]effCell // family -> one cell per fraction
	none      effCell              // the unsteered model on the test items
	plot      string               // the SVG
}

// effCell is one condition's test results: the primary metric of every
// task, its 95% interval, whether the paired test against the unsteered
// model gives p < sigLevel, and the average.
type effCell struct {
	ok     bool
	file   string
	alpha  float64
	metric map[string]float64
	iv     map[string]eval.Interval
	sig    map[string]bool
	avg    float64
}

// cellOf reads the condition of rep whose steering file is path ("" for
// the unsteered model) into cell for task.
func cellOf(cell *effCell, task string, rep *eval.Report, path string) bool {
	for _, m := range rep.Methods {
		if path == "" && m.Name != eval.NoneName || path != "" && (m.Steering == nil || m.Steering.Path != path) {
			continue
		}
		if cell.metric == nil {
			cell.metric, cell.iv, cell.sig = map[string]float64{}, map[string]eval.Interval{}, map[string]bool{}
		}
		v, ok := m.Metric(primary[task])
		if !ok {
			return false
		}
		cell.metric[task] = v
		if iv, ok := m.Interval(primary[task]); ok {
			cell.iv[task] = iv
		}
		if m.Steering != nil {
			cell.alpha = m.Steering.Global
			if d, ok := rep.Comparison(m.Name, eval.NoneName); ok {
				if x, ok := d[primary[task]]; ok && x.P < sigLevel {
					cell.sig[task] = true
				}
			}
		}
		return true
	}
	return false
}

// finish sets ok and the average once every task is read.
func (cell *effCell) finish() {
	cell.ok = len(cell.metric) == len(tasks)
	cell.avg = 0
	for _, task := range tasks {
		cell.avg += cell.metric[task] / float64(len(tasks))
	}
}

// fractionFamilies are the families of best the data-efficiency runs
// retrain, sorted: every one, or those of the -fraction-methods lists.
func (c config) fractionFamilies(best map[string]choice) []string {
	var fams []string
	for _, f := range sortedKeys(best) {
		if len(c.fractionGroups) == 0 || slices.ContainsFunc(c.fractionGroups, func(g []string) bool { return slices.Contains(g, f) }) {
			fams = append(fams, f)
		}
	}
	return fams
}

// fractionPassGroups are the families tested together in each
// data-efficiency pass, with each pass's tag suffix: every family of best
// in one pass (suffix "") without -fraction-methods, else one pass per
// list (suffix "-" and its families), so a later run with another list
// reuses the passes of the earlier ones.
func (c config) fractionPassGroups(best map[string]choice) (groups [][]string, suffixes []string) {
	if len(c.fractionGroups) == 0 {
		return [][]string{c.fractionFamilies(best)}, []string{""}
	}
	for _, g := range c.fractionGroups {
		var fams []string
		for _, f := range g {
			if _, ok := best[f]; ok {
				fams = append(fams, f)
			}
		}
		if len(fams) > 0 {
			slices.Sort(fams)
			groups = append(groups, fams)
			suffixes = append(suffixes, "-"+strings.Join(fams, "_"))
		}
	}
	return groups, suffixes
}

// fractionItems returns the training items per task at fraction f of the
// study's training items (at least 1 each).
func (c config) fractionItems(f float64) (map[string]int, error) {
	n := map[string]int{}
	for _, task := range tasks {
		total := c.trainItems[task]
		size, err := trainPartSize(c.data, task, c.seed)
		if err != nil {
			return nil, err
		}
		if total == 0 || total > size {
			total = size
		}
		k := int(math.Round(f * float64(total)))
		n[task] = max(k, 1)
	}
	return n, nil
}

// trainPartSize is the number of items in task's train part under seed.
func trainPartSize(data, task string, seed uint64) (int, error) {
	if _, _, err := trainRows(data, task, seed, 1); err != nil {
		return 0, err
	}
	return len(trainParts[fmt.Sprintf("%s|%s|%d", data, task, seed)]), nil
}

// dataEfficiency retrains each method's chosen setting (layer, λ) on the
// first fraction of the training items of every task (balanced, so every
// fraction holds every category; smaller fractions are subsets of larger
// ones; their rows are copied from the full extraction, subsetActs),
// calibrates each file under the same KL budget (or keeps the α
// chosen on dev when there is none), and evaluates them on the test
// items in one pass per task and -fraction-methods list (fractionPass). The full-data results come from test. It
// returns the result and the reports it wrote.
func (c config) dataEfficiency(best map[string]choice, specs map[string]fileSpec, test map[string]*eval.Report) (*efficiency, []string, error) {
	eff := &efficiency{fams: c.fractionFamilies(best), cells: map[string][]effCell{}}
	var small []float64
	for _, f := range c.fractions {
		if f < 1 {
			small = append(small, f)
		}
	}
	eff.fractions = append(small, 1)
	var files []fracFile
	for i, f := range small {
		n, err := c.fractionItems(f)
		if err != nil {
			return nil, nil, err
		}
		eff.items = append(eff.items, n)
		for _, fam := range eff.fams {
			spec, ok := specs[best[fam].file]
			if !ok {
				return nil, nil, fmt.Errorf("data efficiency: no training setting for %s", best[fam].file)
			}
			acts, err := c.subsetActs(spec.layer, n, c.tokensOf(spec))
			if err != nil {
				return nil, nil, err
			}
			out := c.path(fmt.Sprintf("frac%g-%s", f, spec.fileName()))
			if err := c.matsteer(out, c.trainArgs(spec, out, acts)...); err != nil {
				return nil, nil, err
			}
			files = append(files, fracFile{fam, i, out})
		}
	}
	full, err := c.fractionItems(1)
	if err != nil {
		return nil, nil, err
	}
	eff.items = append(eff.items, full)
	var tags []string
	for _, f := range small {
		tags = append(tags, strconv.FormatFloat(f, 'g', -1, 64))
	}
	tag := "-fractions" + strings.Join(tags, "_")
	for _, fam := range eff.fams {
		eff.cells[fam] = make([]effCell, len(eff.fractions))
	}
	var reports []string
	groups, suffixes := c.fractionPassGroups(best)
	for g, fams := range groups {
		var group []fracFile
		for _, t := range files {
			if slices.Contains(fams, t.fam) {
				group = append(group, t)
			}
		}
		r, err := c.fractionPass(tag+suffixes[g], group, best, test, eff)
		if err != nil {
			return nil, nil, err
		}
		reports = append(reports, r...)
	}
	for _, task := range tasks {
		last := len(eff.fractions) - 1
		for _, fam := range eff.fams {
			cell := &eff.cells[fam][last]
			cell.file = best[fam].file
			if !cellOf(cell, task, test[task], best[fam].file) {
				return nil, nil, fmt.Errorf("data efficiency: the %s test report lacks %s", task, filepath.Base(best[fam].file))
			}
		}
		if !cellOf(&eff.none, task, test[task], "") {
			return nil, nil, fmt.Errorf("data efficiency: the %s test report has no unsteered condition", task)
		}
	}
	for _, fam := range eff.fams {
		for i := range eff.cells[fam] {
			eff.cells[fam][i].finish()
		}
	}
	eff.none.finish()
	eff.plot = filepath.Join(c.out, "data-efficiency.svg")
	if err := eff.writePlot(eff.plot); err != nil {
		return nil, nil, err
	}
	return eff, reports, nil
}

// fracFile is a steering file retrained on a fraction of the training
// items: its family, the index of the fraction and the path.
type fracFile struct {
	fam  string
	frac int
	file string
}

// fractionPass calibrates files under the KL budget (or keeps each
// family's α chosen on dev when there is none) and tests them in one pass
// per task, tagged tag (on the items of the main test), reading their
// results into eff's cells. It returns the reports it wrote.
func (c config) fractionPass(tag string, files []fracFile, best map[string]choice, test map[string]*eval.Report, eff *efficiency) ([]string, error) {
	var reports []string
	alpha := map[string]float64{}
	if c.maxKL > 0 {
		out := c.path("calibration" + c.suffix() + tag + ".json")
		var paths []string
		for _, t := range files {
			paths = append(paths, t.file)
		}
		cal, err := c.calibrate(out, paths)
		if err != nil {
			return nil, err
		}
		reports = append(reports, out)
		for _, k := range cal.Calibrations {
			alpha[k.Path] = k.Alpha
		}
	} else {
		for _, t := range files {
			alpha[t.file] = best[t.fam].alpha
		}
	}
	var steerArgs []string
	for _, t := range files {
		a, ok := alpha[t.file]
		if !ok {
			return nil, fmt.Errorf("data efficiency: no α for %s", t.file)
		}
		steerArgs = append(steerArgs, "--steer", atAlpha(t.file, a))
	}
	fracTest, tr, err := c.testPass(tag, false, steerArgs, test)
	if err != nil {
		return nil, fmt.Errorf("data efficiency: %w", err)
	}
	reports = append(reports, tr...)
	for _, task := range tasks {
		rep, out := fracTest[task], c.path(c.testName(task, tag))
		for _, t := range files {
			cell := &eff.cells[t.fam][t.frac]
			cell.file = t.file
			if !cellOf(cell, task, rep, t.file) {
				return nil, fmt.Errorf("data efficiency: %s lacks %s", out, filepath.Base(t.file))
			}
		}
	}
	return reports, nil
}

// writeTable writes the data-efficiency table (markdown): a row per method
// and fraction with the training items, α, the primary metrics with their
// 95% intervals, a marker where the paired test against the unsteered
// model gives p < sigLevel, and their average.
func (e *efficiency) writeTable(w io.Writer) {
	fmt.Fprintf(w, "Each method's setting chosen on dev (layer, λ), trained on the first fraction of the training items of every task (balanced across categories; TruthfulQA/BBQ/ToxiGen items in the second column), calibrated under the same KL budget, on the same test items.\n\n")
	fmt.Fprintf(w, "| method | fraction (train items) | α |")
	for _, task := range tasks {
		fmt.Fprintf(w, " %s %s |", task, primary[task])
	}
	fmt.Fprintf(w, " average |\n|---|---|---|")
	for range tasks {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|\n")
	row := func(name, frac, alpha string, cell effCell) {
		fmt.Fprintf(w, "| %s | %s | %s |", name, frac, alpha)
		for _, task := range tasks {
			v := fmt.Sprintf("%.3f", cell.metric[task])
			if iv, ok := cell.iv[task]; ok {
				v += fmt.Sprintf(" [%.3f, %.3f]", iv.Lo, iv.Hi)
			}
			if cell.sig[task] {
				v += " *"
			}
			fmt.Fprintf(w, " %s |", v)
		}
		fmt.Fprintf(w, " %.3f |\n", cell.avg)
	}
	row("none", "-", "-", e.none)
	for _, fam := range e.fams {
		for i, f := range e.fractions {
			cell := e.cells[fam][i]
			items := e.items[i]
			frac := fmt.Sprintf("%g (%d/%d/%d)", f, items[tasks[0]], items[tasks[1]], items[tasks[2]])
			row(fam, frac, fmt.Sprintf("%.3g", cell.alpha), cell)
		}
	}
	fmt.Fprintf(w, "\n[lo, hi]: 95%% bootstrap interval over the test items; *: differs from the unsteered model (paired permutation test, p < %g).\n", sigLevel)
}

// pointsWithErrors are a line's points with their interval half-widths
// (for plotter.YErrorBars).
type pointsWithErrors struct {
	plotter.XYs
	plotter.YErrors
}

// writePlot draws one panel per task (its primary metric against the
// fraction of training items, with the 95% intervals, the unsteered
// model as a dashed line) and one with the average, into an SVG.
func (e *efficiency) writePlot(path string) error {
	var panels []*plot.Plot
	titles := map[string]string{"truthfulqa": "TruthfulQA MC2", "bbq": "BBQ accuracy", "toxigen": "ToxiGen accuracy"}
	for k, task := range append(append([]string{}, tasks...), "average") {
		p := plot.New()
		p.Title.Text = titles[task]
		if task == "average" {
			p.Title.Text = "average of the three"
		}
		p.X.Label.Text = "fraction of training items"
		if k == 0 {
			p.Y.Label.Text = "test metric"
		}
		value := func(cell effCell) float64 {
			if task == "average" {
				return cell.avg
			}
			return cell.metric[task]
		}
		none := plotter.XYs{{X: 0, Y: value(e.none)}, {X: 1.05, Y: value(e.none)}}
		l, err := plotter.NewLine(none)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		l.Color = color.Gray{Y: 90} // not one of the methods' colours
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		if task == "average" {
			p.Legend.Add("none", l)
		}
		for i, fam := range e.fams {
			var pts pointsWithErrors
			for j, f := range e.fractions {
				cell := e.cells[fam][j]
				v := value(cell)
				// Each method a little to the side, so that intervals at the
				// same fraction do not hide each other.
				dodge := 0.012 * (float64(i) - float64(len(e.fams)-1)/2)
				pts.XYs = append(pts.XYs, plotter.XY{X: f + dodge, Y: v})
				if iv, ok := cell.iv[task]; ok {
					pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{v - iv.Lo, iv.Hi - v})
				}
			}
			lp, sc, err := plotter.NewLinePoints(pts.XYs)
			if err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			lp.Color, sc.Color, sc.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
			p.Add(lp, sc)
			if len(pts.YErrors) == len(pts.XYs) {
				eb, err := plotter.NewYErrorBars(pts)
				if err != nil {
					return fmt.Errorf("plot: %w", err)
				}
				eb.Color = plotutil.Color(i)
				p.Add(eb)
			}
			if task == "average" {
				p.Legend.Add(fam, lp, sc)
			}
		}
		p.X.Min, p.X.Max = 0, 1.05
		if task == "average" {
			// The legend goes top left, in headroom of its own above the
			// lines.
			p.Y.Max += 0.4 * (p.Y.Max - p.Y.Min)
			p.Legend.Top, p.Legend.Left = true, true
			p.Legend.XOffs = vg.Points(8)
		}
		panels = append(panels, p)
	}
	img := vgsvg.New(18*vg.Inch, 4.5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Points(12), PadY: vg.Points(8), PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{panels}, tiles, dc)
	for j, p := range panels {
		p.Draw(canvases[0][j])
	}
	return safefile.Write(path, func(w io.Writer) error {
		if _, err := img.WriteTo(w); err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		return nil
	})
}

// subsetActs returns activation files of the first n[task] training items
// of every task at layer l (token mode tokens), reusing the study's full extraction: the rows
// of those items' examples are copied (in order) from it into a new file,
// instead of running the model again. A task whose n covers the whole
// extraction gets the full file.
func (c config) subsetActs(l int, n map[string]int, tokens string) ([]string, error) {
	full, err := c.extractActs(l, c.trainItems, tokens) // cached: the main extraction
	if err != nil {
		return nil, err
	}
	var files []string
	for i, task := range tasks {
		_, items, err := trainRows(c.data, task, c.seed, n[task])
		if err != nil {
			return nil, err
		}
		if _, fullItems, _ := trainRows(c.data, task, c.seed, c.trainItems[task]); items == 0 || fullItems != 0 && items >= fullItems {
			files = append(files, full[i])
			continue
		}
		out := c.path(fmt.Sprintf("%s-L%d-%s-%s-of-%s.safetensors", c.actsPrefix(tokens), l, task, itemsName(items), itemsName(c.trainItems[task])))
		if _, err := os.Stat(out); err == nil {
			fmt.Printf("   (cached) %s\n", filepath.Base(out))
		} else {
			part := trainParts[fmt.Sprintf("%s|%s|%d", c.data, task, c.seed)]
			keep := map[int64]bool{}
			for _, ex := range datasets.Examples(part[:items], "") {
				keep[ex.SampleID] = true
			}
			fmt.Printf("   rows of the first %d %s training items: %s -> %s\n", items, task, filepath.Base(full[i]), filepath.Base(out))
			if err := copyRows(full[i], out, keep, fmt.Sprintf("first %d training items", items)); err != nil {
				return nil, err
			}
		}
		files = append(files, out)
	}
	return files, nil
}

// copyRows writes the rows of activation file src whose sample is in keep
// to dst (atomically, with src's metadata and Extra["subset"] = what). It
// fails when no row is kept or a kept sample has no row.
func copyRows(src, dst string, keep map[int64]bool, what string) error {
	f, err := acts.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	meta := f.Meta
	meta.Extra = maps.Clone(meta.Extra)
	if meta.Extra == nil {
		meta.Extra = map[string]string{}
	}
	meta.Extra["subset"] = what + " of " + filepath.Base(src)
	w, err := acts.Create(dst, meta)
	if err != nil {
		return err
	}
	vec := make([]float32, meta.NEmbd)
	seen := map[int64]bool{}
	for i, r := range f.Rows {
		if !keep[r.SampleID] {
			continue
		}
		if err := f.Vector(i, vec); err != nil {
			w.Abort()
			return err
		}
		if err := w.Append(vec, []acts.Row{r}); err != nil {
			w.Abort()
			return err
		}
		seen[r.SampleID] = true
	}
	if len(seen) == 0 {
		w.Abort()
		return fmt.Errorf("%s: no rows of the %d samples to keep", src, len(keep))
	}
	// A sample may have no rows (e.g. an answer of only special tokens);
	// most must be there, or src is not the extraction of these items.
	if 2*len(seen) < len(keep) {
		w.Abort()
		return fmt.Errorf("%s: rows of only %d of the %d samples to keep: not the extraction of these items", src, len(seen), len(keep))
	}
	return w.Close()
}
