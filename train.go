package matsteer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/extract"
	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/internal/trainset"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// Limits of TrainOptions.
const (
	MaxTrainTokens = 4096 // TrainOptions.MaxTokens
	MaxExamples    = 1 << 24
)

// Example is one labelled training text: Prompt followed by Response
// (start the response with a space). Positive examples show the behaviour
// wanted for Attribute, negative ones the behaviour to steer away from;
// every attribute needs both.
type Example struct {
	Attribute string
	Positive  bool
	Prompt    string
	Response  string
}

// TrainOptions configure extraction and training. The zero value trains
// MAT-Steer on the residual stream of the block at 2/5 of the model's
// depth, on every token of every text.
type TrainOptions struct {
	// Layer is the block whose Site is captured and later steered, from 1
	// to NLayer-1 (0: the default, NLayer·2/5, e.g. 12 of SmolLM2's 30;
	// block 0 is left to package extract).
	Layer int
	// Site is the hook site (default "l_out", the block's output;
	// `matsteer model info` lists a model's sites). Its rows must be
	// NEmbd wide.
	Site string
	// Tokens selects the rows kept per text: extract.TokensAll (default),
	// extract.TokensLast or extract.TokensResponse.
	Tokens string
	// MaxTokens is the longest text in tokens (0: 512, at most
	// MaxTrainTokens); longer texts are cut from the left.
	MaxTokens int
	// Config is the training configuration (nil: steer.DefaultTrainConfig(),
	// MAT-Steer; set Method for a baseline). Its model and site fields are
	// filled in.
	Config *steer.TrainConfig
	// Init, if set, warm-starts training from this steering file (the
	// feedback loop: refine a file with new examples): its attributes that
	// the new data has continue from their trained values, new attributes
	// start fresh, and the others are kept as they are (see
	// steer.TrainConfig.Init). Layer and Site default to the file's; with
	// Config.Epochs 0 the result has the file's values exactly.
	Init *Steering
	// Out, if set, is where the steering file is also written (atomically;
	// checked before any work starts).
	Out string
	// Progress receives progress bars and warnings (nil: none).
	Progress io.Writer
}

// point resolves the capture point of o for m.
func (m *Model) point(o *TrainOptions) (hooks.Point, error) {
	n := m.llm.NLayer()
	layer := o.Layer
	if layer == 0 && o.Init != nil {
		layer = o.Init.Layer()
	}
	if layer == 0 {
		layer = max(1, n*2/5)
	}
	if layer < 1 || layer >= max(n, 2) {
		return hooks.Point{}, fmt.Errorf("TrainOptions.Layer %d is out of range [1, %d] (0: the default, %d)", o.Layer, n-1, max(1, n*2/5))
	}
	site := o.Site
	if site == "" && o.Init != nil {
		site = o.Init.Site()
	}
	if site == "" {
		site = "l_out"
	}
	switch o.Tokens {
	case "", extract.TokensAll, extract.TokensLast, extract.TokensResponse:
	default:
		return hooks.Point{}, fmt.Errorf("TrainOptions.Tokens %q: want %s, %s or %s", o.Tokens, extract.TokensAll, extract.TokensLast, extract.TokensResponse)
	}
	if o.MaxTokens < 0 || o.MaxTokens > MaxTrainTokens {
		return hooks.Point{}, fmt.Errorf("TrainOptions.MaxTokens %d is out of range [0, %d]", o.MaxTokens, MaxTrainTokens)
	}
	p, err := m.cat.Resolve(site, layer)
	if err != nil {
		return hooks.Point{}, fmt.Errorf("TrainOptions: %w", err)
	}
	if err := extract.CheckWidth(m.llm, m.cat, p); err != nil {
		return hooks.Point{}, fmt.Errorf("TrainOptions.Site: %w", err)
	}
	return p, nil
}

// toDatasets converts examples (checked by extract.Run).
func toDatasets(examples []Example) ([]datasets.Example, error) {
	if len(examples) == 0 {
		return nil, errors.New("no examples")
	}
	if len(examples) > MaxExamples {
		return nil, fmt.Errorf("%d examples, at most %d", len(examples), MaxExamples)
	}
	out := make([]datasets.Example, len(examples))
	for i, e := range examples {
		label := 0
		if e.Positive {
			label = 1
		}
		if err := steer.ValidAttributeName(e.Attribute); err != nil {
			return nil, fmt.Errorf("example %d: %w", i, err)
		}
		out[i] = datasets.Example{Attribute: e.Attribute, Label: label, Prompt: e.Prompt, Response: e.Response,
			SampleID: int64(i), ItemID: "example/" + strconv.Itoa(i), Source: "example " + strconv.Itoa(i)}
	}
	return out, nil
}

// Extract runs examples through the model and writes the activations at
// opts' site and layer (Layer, Site, Tokens, MaxTokens and Progress are
// used) to an activation file at path, as `matsteer extract` does. On
// error or cancellation nothing is left at path.
func (m *Model) Extract(ctx context.Context, examples []Example, path string, opts TrainOptions) error {
	ex, err := toDatasets(examples)
	if err != nil {
		return fmt.Errorf("matsteer: Extract: %w", err)
	}
	return m.extract(ctx, ex, path, "examples", opts)
}

func (m *Model) extract(ctx context.Context, ex []datasets.Example, path, source string, opts TrainOptions) error {
	if err := safefile.CheckOutputs([]safefile.Output{{Flag: "path", Path: path}}, nil); err != nil {
		return fmt.Errorf("matsteer: %w", err)
	}
	p, err := m.point(&opts)
	if err != nil {
		return fmt.Errorf("matsteer: %w", err)
	}
	opCtx, done, err := m.use(ctx)
	if err != nil {
		return err
	}
	defer done()
	batch := 512
	if opts.MaxTokens > batch {
		batch = opts.MaxTokens
	}
	h := hooks.New(m.cat)
	defer h.Close()
	lctx, err := llama.NewContext(m.llm, llama.ContextParams{NCtx: batch, NBatch: batch, NUBatch: batch, NSeqMax: 16,
		Threads: m.opts.Threads, ThreadsBatch: m.opts.Threads, Hook: h})
	if err != nil {
		return fmt.Errorf("matsteer: extraction context: %w", err)
	}
	defer lctx.Close()
	extra := map[string]string{}
	if mp := m.llm.Path(); mp != "" {
		extra["model_file"] = filepath.Base(mp)
	}
	_, err = extract.Run(opCtx, lctx, h, ex, path, extract.Options{Point: p, Tokens: opts.Tokens, MaxTokens: opts.MaxTokens,
		Source: source, Extra: extra, Progress: opts.Progress, Warn: opts.Progress})
	if err != nil {
		return m.opErr(ctx, opCtx, "extract", err)
	}
	return nil
}

// Train builds a steering file from labelled examples in memory: it
// captures their activations (Extract, into a temporary file) and trains
// on them (TrainActivations). The file fits this model; opts.Out also
// writes it to disk.
func (m *Model) Train(ctx context.Context, examples []Example, opts TrainOptions) (*Steering, error) {
	ex, err := toDatasets(examples)
	if err != nil {
		return nil, fmt.Errorf("matsteer: Train: %w", err)
	}
	return m.train(ctx, ex, "examples", opts)
}

// TrainJSONL is Train on the examples of a JSONL file, the format
// `matsteer extract` reads: one object a line,
//
//	{"attribute": "formality", "label": 1, "prompt": "Q: Can you help me?\nA:", "response": " I would be glad to."}
//
// (label 1: wanted, 0: to steer away from; "text" may replace prompt and
// response).
func (m *Model) TrainJSONL(ctx context.Context, path string, opts TrainOptions) (*Steering, error) {
	ex, err := datasets.LoadJSONL(path)
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	return m.train(ctx, ex, filepath.Base(path), opts)
}

func (m *Model) train(ctx context.Context, ex []datasets.Example, source string, opts TrainOptions) (*Steering, error) {
	if opts.Out != "" {
		if err := safefile.CheckOutputs([]safefile.Output{{Flag: "TrainOptions.Out", Path: opts.Out}}, nil); err != nil {
			return nil, fmt.Errorf("matsteer: %w", err)
		}
	}
	if _, err := trainConfig(opts); err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	dir, err := os.MkdirTemp("", "matsteer-train-")
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "acts.safetensors")
	if err := m.extract(ctx, ex, path, source, opts); err != nil {
		return nil, err
	}
	return TrainActivations(ctx, []string{path}, opts)
}

// trainConfig returns a copy of cfg, or the default, validated enough to
// fail before extraction.
func trainConfig(opts TrainOptions) (steer.TrainConfig, error) {
	c := steer.DefaultTrainConfig()
	if opts.Config != nil {
		c = *opts.Config
	}
	if opts.Init != nil {
		if c.Init != nil {
			return c, errors.New("TrainOptions.Init and Config.Init are both set; set one")
		}
		c.Init = opts.Init.File()
		if opts.Config == nil {
			c.NormPreserve = c.Init.NormPreserve
		}
	}
	if c.Method == "" {
		c.Method = steer.MethodMATSteer
	}
	switch c.Method {
	case steer.MethodMATSteer, steer.MethodAllTokens, steer.MethodMeanDiff, steer.MethodPCA:
	default:
		return c, fmt.Errorf("TrainConfig.Method %q: want %s, %s, %s or %s", c.Method, steer.MethodMATSteer, steer.MethodAllTokens, steer.MethodMeanDiff, steer.MethodPCA)
	}
	return c, nil
}

// TrainActivations trains a steering file on activation files written by
// Extract or `matsteer extract` (opts.Config, Out and Progress are used):
// rows are grouped by attribute name across the files, which must come
// from the same model, site and layer.
func TrainActivations(ctx context.Context, paths []string, opts TrainOptions) (*Steering, error) {
	if len(paths) == 0 {
		return nil, errors.New("matsteer: TrainActivations: no activation files")
	}
	cfg, err := trainConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	if opts.Out != "" {
		var in []safefile.Input
		for _, p := range paths {
			in = append(in, safefile.Input{Flag: "activations", Path: p})
		}
		if err := safefile.CheckOutputs([]safefile.Output{{Flag: "TrainOptions.Out", Path: opts.Out}}, in); err != nil {
			return nil, fmt.Errorf("matsteer: %w", err)
		}
	}
	set, err := trainset.Read(paths)
	if err != nil {
		return nil, fmt.Errorf("matsteer: %w", err)
	}
	meta := set.Meta
	cfg.Site, cfg.Layer = meta.Site, meta.Layer
	cfg.ModelArch, cfg.ModelName = meta.ModelArch, meta.ModelName
	if cfg.ModelID == "" {
		cfg.ModelID = meta.Extra["model_sha256"]
	}
	if cfg.Progress == nil {
		cfg.Progress = opts.Progress
	}
	f, log, err := steer.Train(ctx, set.Attrs, cfg)
	if err != nil {
		return nil, fmt.Errorf("matsteer: train: %w", err)
	}
	if opts.Progress != nil {
		for _, w := range log.Warnings {
			fmt.Fprintf(opts.Progress, "warning: %s\n", w)
		}
	}
	for i, p := range paths {
		f.Training["data."+strconv.Itoa(i)+".file"] = filepath.Base(p)
		f.Training["data."+strconv.Itoa(i)+".sha256"] = set.SHA256[i]
	}
	f.Training["data.rows"] = strconv.Itoa(set.Rows)
	if meta.TokenMode != "" {
		f.Training["token_mode"] = meta.TokenMode
	}
	s, err := NewSteering(f)
	if err != nil {
		return nil, err
	}
	if opts.Out != "" {
		if err := s.Save(opts.Out); err != nil {
			return nil, err
		}
	}
	return s, nil
}
