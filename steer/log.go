package steer

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/matsteer/matsteer/internal/plotfile"
)

// EpochLog is one epoch of training: the mean loss terms over its steps, the
// dev loss when there is a dev split, and the fraction of off-diagonal MMD
// kernel entries (widest bandwidth) below 1e-38 (0 in float32).
type EpochLog struct {
	Epoch              int        `json:"epoch"`
	Train              LossTerms  `json:"train"`
	Dev                *LossTerms `json:"dev,omitempty"`
	KernelZeroFraction float64    `json:"kernel_zero_fraction"`
}

// TrainLog records a training run. It is deterministic (no timings).
type TrainLog struct {
	Method       string   `json:"method"`
	Mode         string   `json:"mode,omitempty"`
	Attributes   []string `json:"attributes"`
	NPos         []int    `json:"n_pos"`
	NNeg         []int    `json:"n_neg"`
	Seed         uint64   `json:"seed"`
	NormPreserve bool     `json:"norm_preserve"`

	Sigma           string    `json:"sigma,omitempty"`
	SigmaValues     []float64 `json:"sigma_values,omitempty"`
	MedianDistance  float64   `json:"median_pairwise_distance,omitempty"`
	KernelUnderflow float64   `json:"kernel_underflow_fraction"`
	MedianKernel    float64   `json:"median_kernel_value,omitempty"`

	// MMDInitial is each attribute's unbiased MMD²(P_t, N_t) before training
	// (MMDNormInitial only).
	MMDInitial []float64 `json:"mmd_initial,omitempty"`

	EpochsConfigured int     `json:"epochs_configured,omitempty"`
	EpochsRun        int     `json:"epochs_run,omitempty"`
	StepsPerEpoch    int     `json:"steps_per_epoch,omitempty"`
	Batch            int     `json:"batch,omitempty"`
	LR               float64 `json:"lr,omitempty"`
	LambdaPos        float64 `json:"lambda_pos"`
	LambdaSparse     float64 `json:"lambda_sparse"`
	LambdaOrtho      float64 `json:"lambda_ortho"`
	LambdaNeutral    float64 `json:"lambda_neutral,omitempty"`
	NNeutral         int     `json:"n_neutral,omitempty"`
	DevFraction      float64 `json:"dev_fraction"`
	Patience         int     `json:"patience"`
	BestEpoch        int     `json:"best_epoch,omitempty"`
	StoppedEarly     bool    `json:"stopped_early"`

	Epochs   []EpochLog `json:"epochs"`
	Final    LossTerms  `json:"final"`
	FinalDev *LossTerms `json:"final_dev,omitempty"`

	// Eval measures the result per attribute (MAT-Steer and all-tokens).
	Eval []AttrEval `json:"eval,omitempty"`

	// Shared is the shared-row handling (TrainConfig.Shared, when not
	// keep); SharedPos and SharedNeg the rows it removed per attribute.
	Shared    string `json:"shared,omitempty"`
	SharedPos []int  `json:"shared_pos,omitempty"`
	SharedNeg []int  `json:"shared_neg,omitempty"`

	// A warm start (TrainConfig.Init): the init file's attributes trained
	// further, the attributes added with a fresh initialisation, and the
	// init file's attributes without rows, copied unchanged.
	Refined []string `json:"refined,omitempty"`
	Added   []string `json:"added,omitempty"`
	Kept    []string `json:"kept,omitempty"`

	// Baseline details (PCA: explained fraction, iterations).
	Details map[string]float64 `json:"details,omitempty"`

	Warnings []string `json:"warnings"`
}

// AttrEval measures a trained attribute on its rows (the dev split when
// there is one, else the training rows): MMD² (the training bandwidths)
// between up to EvalRows positives and as many negatives, before and after
// steering the negatives, and the mean own gate over all its positive and
// negative rows.
type AttrEval struct {
	Name      string  `json:"name"`
	Split     string  `json:"split"`
	EvalRows  int     `json:"eval_rows"`
	MMDBefore float64 `json:"mmd_before"`
	MMDAfter  float64 `json:"mmd_after"`
	GatePos   float64 `json:"gate_pos"`
	GateNeg   float64 `json:"gate_neg"`
	// GateNeutral is the mean own gate on the neutral rows
	// (TrainConfig.Neutral; 0 without them).
	GateNeutral float64 `json:"gate_neutral,omitempty"`
}

// WriteJSON writes the log as indented JSON.
func (l *TrainLog) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(l); err != nil {
		return fmt.Errorf("training log: %w", err)
	}
	return nil
}

// Plot draws the loss terms per epoch (the weighted total, MMD, the gate
// penalties, orthogonality, and the dev total when present).
func (l *TrainLog) Plot() (*plot.Plot, error) {
	if len(l.Epochs) == 0 {
		return nil, fmt.Errorf("training log has no epochs to plot (method %s)", l.Method)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("MAT-Steer training (%s, sigma %s)", l.Mode, l.Sigma)
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = "loss"
	p.Add(plotter.NewGrid())
	series := []struct {
		name string
		get  func(e EpochLog) (float64, bool)
		c    color.RGBA
	}{
		{"total", func(e EpochLog) (float64, bool) { return e.Train.Total, true }, color.RGBA{0, 0, 0, 255}},
		{"mmd", func(e EpochLog) (float64, bool) { return e.Train.MMD, true }, color.RGBA{31, 119, 180, 255}},
		{"pos", func(e EpochLog) (float64, bool) { return e.Train.Pos, true }, color.RGBA{44, 160, 44, 255}},
		{"sparse", func(e EpochLog) (float64, bool) { return e.Train.Sparse, true }, color.RGBA{214, 39, 40, 255}},
		{"ortho", func(e EpochLog) (float64, bool) { return e.Train.Ortho, true }, color.RGBA{148, 103, 189, 255}},
		{"neutral", func(e EpochLog) (float64, bool) { return e.Train.Neutral, l.LambdaNeutral > 0 }, color.RGBA{140, 86, 75, 255}},
		{"dev total", func(e EpochLog) (float64, bool) {
			if e.Dev == nil {
				return 0, false
			}
			return e.Dev.Total, true
		}, color.RGBA{255, 127, 14, 255}},
	}
	for _, s := range series {
		var pts plotter.XYs
		for _, e := range l.Epochs {
			if v, ok := s.get(e); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
				pts = append(pts, plotter.XY{X: float64(e.Epoch), Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", s.name, err)
		}
		line.Color = s.c
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(s.name, line)
	}
	p.Legend.Top = true
	return p, nil
}

// WritePNG writes the loss plot as a PNG image to path, atomically; a name
// not ending in .png is refused before anything is written.
func (l *TrainLog) WritePNG(path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".png" {
		return fmt.Errorf("write plot %s: not a .png file name", path)
	}
	p, err := l.Plot()
	if err != nil {
		return err
	}
	return plotfile.Write(p, path)
}
