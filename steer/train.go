package steer

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/progress"
	"gonum.org/v1/gonum/floats"
)

// AttributeData holds one attribute's training rows: positives (desired)
// and negatives (to be steered), each a row of NEmbd activations. The rows
// are not modified. For the PCA baseline Pos[i] and Neg[i] form a pair.
type AttributeData struct {
	Name     string
	Pos, Neg [][]float64
}

// TrainConfig configures Train. Start from DefaultTrainConfig.
type TrainConfig struct {
	Method string // MethodMATSteer (default), MethodAllTokens, MethodMeanDiff or MethodPCA
	Mode   string // ModeReference (default) or ModePaper
	Epochs int    // passes; each has ⌈min_t min(|P_t|,|N_t|)/Batch⌉ steps
	LR     float64
	Batch  int // positives and negatives per attribute per step
	Sigma  Sigma

	LambdaPos, LambdaSparse, LambdaOrtho float64

	// Neutral holds rows of ordinary text that belong to no attribute
	// (NEmbd values each; not modified). With LambdaNeutral > 0 every gate
	// is penalised on a batch of them each step (see neutral.go: gates that
	// stay shut where nothing needs steering); the training log reports the
	// mean gates on them either way.
	Neutral       [][]float64
	LambdaNeutral float64

	// Shared: SharedKeep ("" too; the paper), SharedDrop or SharedNeutral
	// (see shared.go): what to do with rows an attribute has bit-identically
	// among both its positives and its negatives (shared prompt tokens).
	// MethodMATSteer and MethodAllTokens only.
	Shared string
	// SharedTolerance (> 0) makes rows within this relative distance of
	// a row on the other side shared too (‖a − b‖ ≤ tol·max(‖a‖, ‖b‖)):
	// the same prompt token extracted in two different batches need not
	// be bit-identical (see shared.go). 0: bit-identical rows only.
	SharedTolerance float64

	Seed         uint64
	NormPreserve bool

	// Parameterisation and initialisation (see the package doc, "Training
	// on real activations"). GateInput: GateInputRaw (official),
	// GateInputStandardize or GateInputScale. ThetaInit: ThetaInitNormal
	// (official), ThetaInitScaled or ThetaInitMeanDiff. ThetaScale:
	// ThetaScaleNone (official) or ThetaScaleData.
	GateInput  string
	ThetaInit  string
	ThetaScale string

	// GateBiasInit, when set, starts every new attribute's gate bias
	// (in the trained coordinates) at this value instead of
	// U(±1/√d): e.g. −2 starts the gates at σ(−2) ≈ 0.12 instead of
	// ≈ 0.5, so that they open only where the MMD term pays for it.
	GateBiasInit *float64

	// GateShift (MethodMATSteer; ≥ 0) is subtracted from every gate's
	// bias after training: gates become σ(w·a + b − GateShift). Where a
	// gate is small it shrinks by about e^−GateShift, where it is near 1
	// much less, so the gates concentrate on the tokens whose logits are
	// highest (a per-attribute threshold in soft form). The training log's
	// gate statistics are those of the shifted gates.
	GateShift float64

	// MMDNorm: MMDNormNone (official) or MMDNormInitial, which divides each
	// attribute's MMD term by its unsteered MMD² so that the λ weights are
	// relative to what steering can gain.
	MMDNorm string

	// DevFraction holds out this fraction of every pool for a dev loss
	// evaluated after each epoch; with Patience > 0 training stops after
	// Patience epochs without a better dev loss and the best parameters are
	// kept.
	DevFraction float64
	Patience    int

	// Workers bounds the goroutines computing attributes in parallel
	// (0: GOMAXPROCS). Results do not depend on it.
	Workers int

	// Progress receives a progress bar with the loss terms (nil: none).
	Progress io.Writer

	// Init, when set, warm-starts MAT-Steer training from this steering
	// file (see [Train], "Warm start"). The file is not modified.
	Init *File

	// Copied into the returned File (Train does not interpret them).
	Site                          string
	Layer                         int
	ModelArch, ModelName, ModelID string
}

// Presets (the --preset flag of matsteer train).
const (
	PresetDefault   = "default"   // DefaultTrainConfig
	PresetReference = "reference" // ReferenceTrainConfig
)

// PresetConfig returns the named preset.
func PresetConfig(name string) (TrainConfig, error) {
	switch name {
	case PresetDefault, "":
		return DefaultTrainConfig(), nil
	case PresetReference:
		return ReferenceTrainConfig(), nil
	}
	return TrainConfig{}, fmt.Errorf("unknown preset %q (want %s or %s)", name, PresetDefault, PresetReference)
}

// ReferenceTrainConfig is the official code's setting: the paper's QA
// weights λ_pos = λ_sparse = 0.9, λ_ortho = 0.1, σ = 2, reference-mode
// reductions, 100 epochs, Adam lr 1e-3, 16 + 16 rows per attribute per step,
// θ ~ N(0, I), gate weights ~ U(±1/√d) on the raw activations, MMD as it
// is, norm preservation on. It reproduces the official numbers exactly.
func ReferenceTrainConfig() TrainConfig {
	return TrainConfig{
		Method:       MethodMATSteer,
		Mode:         ModeReference,
		Epochs:       100,
		LR:           1e-3,
		Batch:        16,
		Sigma:        FixedSigma(DefaultSigma),
		LambdaPos:    0.9,
		LambdaSparse: 0.9,
		LambdaOrtho:  0.1,
		Seed:         1,
		NormPreserve: true,
		GateInput:    GateInputRaw,
		ThetaInit:    ThetaInitNormal,
		ThetaScale:   ThetaScaleNone,
		MMDNorm:      MMDNormNone,
	}
}

// DefaultTrainConfig is ReferenceTrainConfig made to work on real LLM
// activations (see the package doc, "Training on real activations"): the
// same model, losses, weights and schedule, with the kernel bandwidth at the
// median pairwise distance, θ started at the mean difference, each
// attribute's MMD term normalised by its unsteered value (each of the three
// is needed: TestTrainLLMScale and the doc), and the gate trained on
// RMS-scaled inputs (softer gates that open at inference; folded back into
// the raw-input gate in the file).
func DefaultTrainConfig() TrainConfig {
	c := ReferenceTrainConfig()
	c.Sigma = MedianSigma()
	c.GateInput = GateInputScale
	c.ThetaInit = ThetaInitMeanDiff
	c.MMDNorm = MMDNormInitial
	return c
}

func (c *TrainConfig) validate() error {
	switch c.Method {
	case MethodMATSteer, MethodAllTokens, MethodMeanDiff, MethodPCA:
	default:
		return fmt.Errorf("unknown training method %q (want %s, %s, %s or %s)", c.Method, MethodMATSteer, MethodAllTokens, MethodMeanDiff, MethodPCA)
	}
	if err := validShared(c.Shared); err != nil {
		return err
	}
	if !(c.SharedTolerance >= 0 && c.SharedTolerance < 1) {
		return fmt.Errorf("shared-row tolerance %v out of range [0, 1)", c.SharedTolerance)
	}
	if c.SharedTolerance > 0 && (c.Shared == "" || c.Shared == SharedKeep) {
		return fmt.Errorf("a shared-row tolerance needs shared-row handling %s or %s", SharedDrop, SharedNeutral)
	}
	if c.Shared != "" && c.Shared != SharedKeep && (c.Method == MethodMeanDiff || c.Method == MethodPCA) {
		return fmt.Errorf("shared-row handling %s needs method %s or %s, not %s", c.Shared, MethodMATSteer, MethodAllTokens, c.Method)
	}
	if c.Init != nil && c.Method != MethodMATSteer {
		return fmt.Errorf("a warm start (init file) needs method %s, not %s", MethodMATSteer, c.Method)
	}
	if !(c.GateShift >= 0 && c.GateShift <= MaxGateShift) {
		return fmt.Errorf("gate shift %v out of range [0, %v]", c.GateShift, MaxGateShift)
	}
	if c.GateShift > 0 && c.Method != MethodMATSteer {
		return fmt.Errorf("a gate shift needs method %s (the only one with gates), not %s", MethodMATSteer, c.Method)
	}
	if c.Method == MethodMeanDiff || c.Method == MethodPCA {
		return nil
	}
	if c.Mode != ModeReference && c.Mode != ModePaper {
		return fmt.Errorf("unknown loss mode %q (want %s or %s)", c.Mode, ModeReference, ModePaper)
	}
	if err := validGateInput(c.GateInput); err != nil {
		return err
	}
	if err := validThetaInit(c.ThetaInit); err != nil {
		return err
	}
	if err := validThetaScale(c.ThetaScale); err != nil {
		return err
	}
	if c.MMDNorm != MMDNormNone && c.MMDNorm != MMDNormInitial {
		return fmt.Errorf("unknown MMD normalisation %q (want %s or %s)", c.MMDNorm, MMDNormNone, MMDNormInitial)
	}
	minEpochs := 1
	if c.Init != nil {
		minEpochs = 0 // 0: the init file's attributes unchanged
	}
	if c.Epochs < minEpochs || c.Epochs > 1_000_000 {
		return fmt.Errorf("epochs %d out of range [%d, 1e6]", c.Epochs, minEpochs)
	}
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		return fmt.Errorf("learning rate %v must be positive", c.LR)
	}
	if c.Batch < 1 || c.Batch > 1<<16 {
		return fmt.Errorf("batch %d out of range [1, 65536]", c.Batch)
	}
	if err := c.Sigma.validate(); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		v    float64
	}{{"lambda-pos", c.LambdaPos}, {"lambda-sparse", c.LambdaSparse}, {"lambda-ortho", c.LambdaOrtho}} {
		if !(l.v >= 0) || math.IsInf(l.v, 0) {
			return fmt.Errorf("%s %v must be a finite number >= 0", l.name, l.v)
		}
	}
	if err := validLambda("lambda-neutral", c.LambdaNeutral); err != nil {
		return err
	}
	if c.LambdaNeutral > 0 && len(c.Neutral) == 0 && c.Shared != SharedNeutral {
		return fmt.Errorf("lambda-neutral %v needs neutral rows", c.LambdaNeutral)
	}
	if c.Shared == SharedNeutral && !(c.LambdaNeutral > 0) {
		return fmt.Errorf("shared rows as neutral rows need lambda-neutral > 0")
	}
	if c.GateBiasInit != nil && (math.IsNaN(*c.GateBiasInit) || math.Abs(*c.GateBiasInit) > 100) {
		return fmt.Errorf("gate bias init %v out of range [-100, 100]", *c.GateBiasInit)
	}
	if !(c.DevFraction >= 0 && c.DevFraction < 1) {
		return fmt.Errorf("dev fraction %v out of range [0, 1)", c.DevFraction)
	}
	if c.Patience < 0 {
		return fmt.Errorf("patience %d must be >= 0", c.Patience)
	}
	if c.Patience > 0 && c.DevFraction == 0 {
		return fmt.Errorf("patience needs a dev split (dev fraction > 0)")
	}
	return nil
}

// MaxGateShift bounds TrainConfig.GateShift: beyond it every gate of a
// float32 logit range is 0.
const MaxGateShift = 50

// pool is one attribute's rows, flattened.
type pool struct {
	pos, neg   []float64
	nPos, nNeg int
}

// flattenData validates data and returns the row width and flat pools.
func flattenData(data []AttributeData) (int, []pool, error) {
	if len(data) == 0 {
		return 0, nil, fmt.Errorf("no attributes to train")
	}
	if len(data) > MaxAttributes {
		return 0, nil, fmt.Errorf("%d attributes, at most %d", len(data), MaxAttributes)
	}
	d := -1
	seen := make(map[string]bool)
	pools := make([]pool, len(data))
	for t, a := range data {
		if err := ValidAttributeName(a.Name); err != nil {
			return 0, nil, err
		}
		if seen[a.Name] {
			return 0, nil, fmt.Errorf("attribute %q given twice", a.Name)
		}
		seen[a.Name] = true
		if len(a.Pos) == 0 || len(a.Neg) == 0 {
			return 0, nil, fmt.Errorf("attribute %q has %d positive and %d negative rows; both must be non-empty", a.Name, len(a.Pos), len(a.Neg))
		}
		flatten := func(rows [][]float64, what string) ([]float64, error) {
			if d < 0 {
				d = len(rows[0])
				if d == 0 || d > MaxNEmbd {
					return nil, fmt.Errorf("attribute %q: row width %d out of range [1, %d]", a.Name, d, MaxNEmbd)
				}
			}
			out := make([]float64, 0, len(rows)*d)
			for i, r := range rows {
				if len(r) != d {
					return nil, fmt.Errorf("attribute %q: %s row %d has %d values, want n_embd=%d", a.Name, what, i, len(r), d)
				}
				if j := firstNonFinite(r); j >= 0 {
					return nil, fmt.Errorf("attribute %q: %s row %d has a non-finite value at %d", a.Name, what, i, j)
				}
				out = append(out, r...)
			}
			return out, nil
		}
		var err error
		if pools[t].pos, err = flatten(a.Pos, "positive"); err != nil {
			return 0, nil, err
		}
		if pools[t].neg, err = flatten(a.Neg, "negative"); err != nil {
			return 0, nil, err
		}
		pools[t].nPos, pools[t].nNeg = len(a.Pos), len(a.Neg)
	}
	return d, pools, nil
}

// Independent random streams, so that e.g. the sigma option does not change
// the batches.
const (
	streamInit = iota + 1
	streamBatches
	streamDev
	streamSigma
	streamEval
	streamMMDNorm
	streamNeutral
)

func newRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6d61747374656572^stream*0x9e3779b97f4a7c15))
}

// Train fits a steering file to data. MethodMATSteer and MethodAllTokens
// run MAT-Steer training (the latter then drops the gates); MethodMeanDiff
// and MethodPCA compute the baselines. The same data, config and seed give a
// byte-identical file. Train honours ctx cancellation between steps.
//
// # Warm start
//
// With cfg.Init set (MethodMATSteer only), training starts from that
// file's attributes instead of a fresh initialisation: an attribute of data
// that the file has starts at the file's θ, w and b; one the file lacks gets
// the usual fresh initialisation (cfg.ThetaInit); one of the file that data
// lacks is copied unchanged (it takes no part in this training, also not in
// the orthogonality term). The result lists the file's attributes in its
// order, then the new ones in data order. With cfg.Epochs 0 the file's
// attributes are returned exactly (bit for bit). Everything else is as in
// a fresh run on data: the optimiser state starts fresh, and the kernel
// bandwidth (median), the MMD normalisation and the gate-input scale are
// computed from data (the file always stores gates on raw activations, so
// any --gate-input continues it). The file must be a gated MAT-Steer file
// with the rows' width, and its norm preservation must equal
// cfg.NormPreserve (it decides what the file does at inference). Empty
// cfg.Site, ModelArch, ModelName and ModelID are taken from the file (Site
// with its Layer); given ones must match it.
func Train(ctx context.Context, data []AttributeData, cfg TrainConfig) (*File, *TrainLog, error) {
	if cfg.Init != nil {
		return trainWarm(ctx, data, cfg)
	}
	return train(ctx, data, cfg, nil)
}

// warmStart is the starting point of a warm start: model parameters in
// the order of the data, and which attributes take them (nil: all).
type warmStart struct {
	m   params
	has []bool
}

func train(ctx context.Context, data []AttributeData, cfg TrainConfig, init *warmStart) (*File, *TrainLog, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	var sharedPos, sharedNeg []int
	if cfg.Shared == SharedDrop || cfg.Shared == SharedNeutral {
		var shared [][]float64
		var err error
		if data, shared, sharedPos, sharedNeg, err = splitShared(data, cfg.SharedTolerance); err != nil {
			return nil, nil, fmt.Errorf("train: %w", err)
		}
		if cfg.Shared == SharedNeutral {
			cfg.Neutral = append(cfg.Neutral[:len(cfg.Neutral):len(cfg.Neutral)], shared...)
		}
	}
	d, pools, err := flattenData(data)
	if err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	f := &File{
		Version: FileVersion, Site: cfg.Site, Layer: cfg.Layer, NEmbd: d,
		ModelArch: cfg.ModelArch, ModelName: cfg.ModelName, ModelID: cfg.ModelID,
		Method: cfg.Method, NormPreserve: cfg.NormPreserve,
		Training: map[string]string{"method": cfg.Method},
	}
	log := &TrainLog{Method: cfg.Method, Seed: cfg.Seed, NormPreserve: cfg.NormPreserve, Warnings: []string{}}
	for t, a := range data {
		log.Attributes = append(log.Attributes, a.Name)
		log.NPos = append(log.NPos, pools[t].nPos)
		log.NNeg = append(log.NNeg, pools[t].nNeg)
	}
	f.Training["n_pos"] = joinInts(log.NPos)
	f.Training["n_neg"] = joinInts(log.NNeg)
	f.Training["norm_preserve"] = strconv.FormatBool(cfg.NormPreserve)
	if sharedPos != nil {
		log.Shared, log.SharedPos, log.SharedNeg = cfg.Shared, sharedPos, sharedNeg
		f.Training["shared"] = cfg.Shared
		if cfg.SharedTolerance > 0 {
			f.Training["shared_tolerance"] = fmtF(cfg.SharedTolerance)
		}
		f.Training["shared_pos"] = joinInts(sharedPos)
		f.Training["shared_neg"] = joinInts(sharedNeg)
	}
	switch cfg.Method {
	case MethodMeanDiff, MethodPCA:
		if err := baseline(ctx, data, pools, d, cfg, f, log); err != nil {
			return nil, nil, fmt.Errorf("train: %w", err)
		}
		return f, log, nil
	}
	if err := trainMATSteer(ctx, data, pools, d, cfg, init, f, log); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	return f, log, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func fmtF(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// cycler hands out indices of a pool in shuffled order, reshuffling when
// the pool is used up.
type cycler struct {
	perm []int
	next int
}

func newCycler(n int, rng *rand.Rand) *cycler {
	c := &cycler{perm: make([]int, n)}
	for i := range c.perm {
		c.perm[i] = i
	}
	c.shuffle(rng)
	return c
}

func (c *cycler) shuffle(rng *rand.Rand) {
	rng.Shuffle(len(c.perm), func(i, j int) { c.perm[i], c.perm[j] = c.perm[j], c.perm[i] })
	c.next = 0
}

func (c *cycler) take(k int, rng *rand.Rand) []int {
	if c.next+k > len(c.perm) {
		c.shuffle(rng)
	}
	s := c.perm[c.next : c.next+k]
	c.next += k
	return s
}

// sample draws k distinct indices uniformly (a partial Fisher–Yates shuffle
// of c.perm, which stays a permutation).
func (c *cycler) sample(k int, rng *rand.Rand) []int {
	n := len(c.perm)
	for i := 0; i < k; i++ {
		j := i + rng.IntN(n-i)
		c.perm[i], c.perm[j] = c.perm[j], c.perm[i]
	}
	return c.perm[:k]
}

func gather(dst, src []float64, idx []int, d int) []float64 {
	dst = grow(dst, len(idx)*d)
	for i, r := range idx {
		copy(dst[i*d:(i+1)*d], src[r*d:(r+1)*d])
	}
	return dst
}

// splitDev moves a seeded random fraction of each pool into a dev pool.
func splitDev(pools []pool, names []string, d int, frac float64, rng *rand.Rand) (train, dev []pool, err error) {
	take := func(rows []float64, n int, what, name string) ([]float64, []float64, error) {
		k := int(math.Round(frac * float64(n)))
		if k < 1 || n-k < 1 {
			return nil, nil, fmt.Errorf("attribute %q: %d %s rows are too few for a dev fraction of %v", name, n, what, frac)
		}
		perm := rng.Perm(n)
		devRows := make([]float64, 0, k*d)
		trainRows := make([]float64, 0, (n-k)*d)
		for i, r := range perm {
			if i < k {
				devRows = append(devRows, rows[r*d:(r+1)*d]...)
			} else {
				trainRows = append(trainRows, rows[r*d:(r+1)*d]...)
			}
		}
		return trainRows, devRows, nil
	}
	for t, p := range pools {
		var tp, dp pool
		if tp.pos, dp.pos, err = take(p.pos, p.nPos, "positive", names[t]); err != nil {
			return nil, nil, err
		}
		if tp.neg, dp.neg, err = take(p.neg, p.nNeg, "negative", names[t]); err != nil {
			return nil, nil, err
		}
		tp.nPos, tp.nNeg = len(tp.pos)/d, len(tp.neg)/d
		dp.nPos, dp.nNeg = len(dp.pos)/d, len(dp.neg)/d
		train = append(train, tp)
		dev = append(dev, dp)
	}
	return train, dev, nil
}

// selection is the row indices of one attribute's batch.
type selection struct{ pos, neg, mmd []int }

// maxDevBatches bounds the fixed dev batches evaluated after each epoch.
const maxDevBatches = 16

func trainMATSteer(ctx context.Context, data []AttributeData, pools []pool, d int, cfg TrainConfig, init *warmStart, f *File, log *TrainLog) error {
	T := len(pools)
	names := log.Attributes
	reference := cfg.Mode == ModeReference
	var devPools []pool
	if cfg.DevFraction > 0 {
		var err error
		if pools, devPools, err = splitDev(pools, names, d, cfg.DevFraction, newRand(cfg.Seed, streamDev)); err != nil {
			return err
		}
	}

	// Kernel bandwidth(s) and the underflow check.
	var all [][]float64
	for _, p := range pools {
		all = append(all, p.pos, p.neg)
	}
	sigmas, ks, err := resolveSigmas(cfg.Sigma, sampleDistances(all, d, newRand(cfg.Seed, streamSigma)))
	if err != nil {
		return err
	}
	if w := kernelWarning(cfg.Sigma, sigmas, ks); w != "" {
		log.Warnings = append(log.Warnings, w)
	}

	minRows := math.MaxInt
	for _, p := range pools {
		minRows = min(minRows, p.nPos, p.nNeg)
	}
	stepsPerEpoch := (minRows + cfg.Batch - 1) / cfg.Batch

	var st dataStats
	if cfg.GateInput != GateInputRaw || cfg.ThetaScale != ThetaScaleNone || cfg.ThetaInit != ThetaInitNormal {
		st = poolStats(pools, d)
	}
	rp, err := newReparam(cfg, st, T, d)
	if err != nil {
		return err
	}
	// p holds the trained parameters, m the model's (see reparam).
	p, m := newParams(T, d), newParams(T, d)
	{
		rng := newRand(cfg.Seed, streamInit)
		for i := range p.theta() {
			p.theta()[i] = rng.NormFloat64()
		}
		bound := 1 / math.Sqrt(float64(d))
		for t := 0; t < T; t++ {
			for i := range p.wT(t) {
				p.wT(t)[i] = (2*rng.Float64() - 1) * bound
			}
			p.b()[t] = (2*rng.Float64() - 1) * bound
			if cfg.GateBiasInit != nil {
				p.b()[t] = *cfg.GateBiasInit
			}
		}
		if cfg.ThetaInit != ThetaInitNormal {
			for t, pl := range pools {
				md := meanDiffFlat(pl, d)
				th := p.thetaT(t)
				if cfg.ThetaInit == ThetaInitScaled {
					floats.Scale(math.Sqrt(floats.Dot(md, md)/float64(d)), th)
				} else {
					copy(th, md)
				}
				if rp != nil {
					floats.Scale(1/rp.thetaR, th)
				}
			}
		}
	}
	rp.toModel(p, m)
	if init != nil {
		// m takes the given values exactly (no round trip through the
		// trained coordinates, so that zero epochs return them bit for bit).
		for t := 0; t < T; t++ {
			if init.has == nil || init.has[t] {
				copy(m.thetaT(t), init.m.thetaT(t))
				copy(m.wT(t), init.m.wT(t))
				m.b()[t] = init.m.b()[t]
			}
		}
		rp.toTrained(m, p)
	}

	o := &objective{reference: reference, sigmas: sigmas, lambdaPos: cfg.LambdaPos, lambdaSparse: cfg.LambdaSparse, lambdaOrtho: cfg.LambdaOrtho, normPreserve: cfg.NormPreserve}
	if cfg.MMDNorm == MMDNormInitial {
		mrng := newRand(cfg.Seed, streamMMDNorm)
		for t, pl := range pools {
			n := min(evalRows, pl.nPos, pl.nNeg)
			m0 := 0.0
			if n >= 2 {
				x := gather(nil, pl.pos, newCycler(pl.nPos, mrng).take(n, mrng), d)
				y := gather(nil, pl.neg, newCycler(pl.nNeg, mrng).take(n, mrng), d)
				m0 = mmdUnbiased(x, y, n, n, d, sigmas)
			}
			log.MMDInitial = append(log.MMDInitial, m0)
			if m0 < minMMDNorm {
				log.Warnings = append(log.Warnings, fmt.Sprintf("attribute %q: the positives and negatives are hardly distinguishable at sigma %s (unbiased MMD² %.3g on %d+%d rows); its MMD term is normalised by %g instead", names[t], fmtList(sigmas), m0, n, n, minMMDNorm))
				m0 = minMMDNorm
			}
			o.mmdWeight = append(o.mmdWeight, 1/m0)
		}
	}
	neutral, nNeutral, err := flattenNeutral(cfg.Neutral, d)
	if err != nil {
		return err
	}
	var neuC *cycler
	var neuRows, neuZ []float64
	nrng := newRand(cfg.Seed, streamNeutral)
	if cfg.LambdaNeutral > 0 && nNeutral > 0 {
		neuC = newCycler(nNeutral, nrng)
	} else if cfg.LambdaNeutral > 0 {
		log.Warnings = append(log.Warnings, "no neutral rows (no row occurs among both the positives and the negatives of an attribute): the neutral term is off")
	}
	opt := newAdam(len(p.v), cfg.LR)
	grad := make([]float64, len(p.v))
	batches := make([]attrBatch, T)
	work := make([]attrWork, T)
	rng := newRand(cfg.Seed, streamBatches)
	posC, negC, mmdC := make([]*cycler, T), make([]*cycler, T), make([]*cycler, T)
	for t, pl := range pools {
		posC[t], negC[t], mmdC[t] = newCycler(pl.nPos, rng), newCycler(pl.nNeg, rng), newCycler(pl.nPos, rng)
		batches[t].attr = t
	}

	// Fixed dev batches.
	var devBatches [][]attrBatch
	if devPools != nil {
		drng := newRand(cfg.Seed, streamDev+100)
		minDev := math.MaxInt
		for _, dp := range devPools {
			minDev = min(minDev, dp.nPos, dp.nNeg)
		}
		n := min(maxDevBatches, (minDev+cfg.Batch-1)/cfg.Batch)
		dpc, dnc, dmc := make([]*cycler, T), make([]*cycler, T), make([]*cycler, T)
		for t, dp := range devPools {
			dpc[t], dnc[t], dmc[t] = newCycler(dp.nPos, drng), newCycler(dp.nNeg, drng), newCycler(dp.nPos, drng)
		}
		for k := 0; k < n; k++ {
			bs := make([]attrBatch, T)
			for t, dp := range devPools {
				bp, bn := min(cfg.Batch, dp.nPos), min(cfg.Batch, dp.nNeg)
				bs[t].attr = t
				bs[t].pos = gather(nil, dp.pos, dpc[t].take(bp, drng), d)
				bs[t].neg = gather(nil, dp.neg, dnc[t].take(bn, drng), d)
				if reference {
					bs[t].mmdPos = gather(nil, dp.pos, dmc[t].sample(bp, drng), d)
				} else {
					bs[t].mmdPos = bs[t].pos
				}
			}
			devBatches = append(devBatches, bs)
		}
	}
	devWork := make([]attrWork, T)
	devGrad := make([]float64, len(p.v))
	evalDev := func() LossTerms {
		var sum LossTerms
		for _, bs := range devBatches {
			sum.add(o.lossGrad(m, bs, devWork, devGrad), 1/float64(len(devBatches)))
		}
		return sum
	}

	// runAttr gathers attribute t's rows and computes its share of the step.
	sel := make([]selection, T)
	var nrm norms
	runAttr := func(t int) {
		b, pl := &batches[t], &pools[t]
		b.pos = gather(b.pos, pl.pos, sel[t].pos, d)
		b.neg = gather(b.neg, pl.neg, sel[t].neg, d)
		if reference {
			b.mmdPos = gather(b.mmdPos, pl.pos, sel[t].mmd, d)
		} else {
			b.mmdPos = b.pos
		}
		o.attrLossGrad(m, b, nrm, &work[t])
	}

	// Workers for the per-attribute part of a step.
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, T)
	jobs := make(chan int, T)
	done := make(chan struct{}, T)
	defer close(jobs)
	if workers > 1 {
		for i := 0; i < workers; i++ {
			go func() {
				for t := range jobs {
					runAttr(t)
					done <- struct{}{}
				}
			}()
		}
	}

	log.Mode = cfg.Mode
	log.Sigma = cfg.Sigma.String()
	log.SigmaValues = sigmas
	log.MedianDistance = ks.Median
	log.KernelUnderflow = ks.Underflow
	log.MedianKernel = ks.MedianK
	log.EpochsConfigured = cfg.Epochs
	log.StepsPerEpoch = stepsPerEpoch
	log.Batch = cfg.Batch
	log.LR = cfg.LR
	log.LambdaPos, log.LambdaSparse, log.LambdaOrtho = cfg.LambdaPos, cfg.LambdaSparse, cfg.LambdaOrtho
	log.LambdaNeutral, log.NNeutral = cfg.LambdaNeutral, nNeutral
	log.DevFraction, log.Patience = cfg.DevFraction, cfg.Patience

	bar := (*progress.Bar)(nil)
	if cfg.Progress != nil {
		bar = progress.New(cfg.Progress, int64(cfg.Epochs*stepsPerEpoch), "train", "step")
		defer bar.Finish()
	}

	best := math.Inf(1)
	bestParams := make([]float64, len(p.v))
	bad := 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		var sum LossTerms
		kZero, kPair := 0, 0
		for step := 0; step < stepsPerEpoch; step++ {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("epoch %d: %w", epoch, err)
			}
			// Draw the rows here (one random stream); the workers gather them.
			for t, pl := range pools {
				bp, bn := min(cfg.Batch, pl.nPos), min(cfg.Batch, pl.nNeg)
				sel[t].pos = append(sel[t].pos[:0], posC[t].take(bp, rng)...)
				sel[t].neg = append(sel[t].neg[:0], negC[t].take(bn, rng)...)
				if reference {
					sel[t].mmd = append(sel[t].mmd[:0], mmdC[t].sample(bp, rng)...)
				}
			}
			nrm = o.stepNormsCounts(sel, T)
			if workers > 1 {
				for t := 0; t < T; t++ {
					jobs <- t
				}
				for t := 0; t < T; t++ {
					<-done
				}
			} else {
				for t := 0; t < T; t++ {
					runAttr(t)
				}
			}
			lt := o.combine(m, work, nrm, grad)
			if neuC != nil {
				k := min(cfg.Batch, nNeutral)
				neuRows = gather(neuRows, neutral, neuC.take(k, nrng), d)
				scale := 1.0 // paper: the plain sum
				if reference {
					scale = 1 / float64(k*T)
				}
				var s float64
				s, neuZ = neutralLossGrad(m, neuRows, k, cfg.LambdaNeutral*scale, neuZ, grad)
				lt.Neutral = scale * s
				lt.Total += cfg.LambdaNeutral * lt.Neutral
			}
			if !isFinite(lt.Total) || !allFinite(grad) {
				return fmt.Errorf("epoch %d step %d: the loss or its gradient is not finite (loss %v); lower --lr or check the data scale", epoch, step+1, lt.Total)
			}
			rp.chain(params{T: T, d: d, v: grad})
			opt.update(p.v, grad)
			rp.toModel(p, m)
			sum.add(lt, 1/float64(stepsPerEpoch))
			for t := range work {
				kZero += work[t].kZero
				kPair += work[t].kPair
			}
			bar.Add(1)
		}
		el := EpochLog{Epoch: epoch, Train: sum}
		if kPair > 0 {
			el.KernelZeroFraction = float64(kZero) / float64(kPair)
		}
		status := fmt.Sprintf("ep %d/%d loss %.4g mmd %.4g pos %.4g sparse %.4g ortho %.4g", epoch, cfg.Epochs, sum.Total, sum.MMD, sum.Pos, sum.Sparse, sum.Ortho)
		if neuC != nil {
			status += fmt.Sprintf(" neutral %.4g", sum.Neutral)
		}
		stop := false
		if devBatches != nil {
			dl := evalDev()
			el.Dev = &dl
			status += fmt.Sprintf(" dev %.4g", dl.Total)
			if dl.Total < best {
				best = dl.Total
				copy(bestParams, p.v)
				log.BestEpoch = epoch
				bad = 0
			} else if bad++; cfg.Patience > 0 && bad >= cfg.Patience {
				stop = true
			}
		}
		log.Epochs = append(log.Epochs, el)
		bar.SetStatus(status)
		if stop {
			log.StoppedEarly = true
			break
		}
	}
	var final EpochLog // zero epochs (a warm start): no losses
	if len(log.Epochs) > 0 {
		last := log.Epochs[len(log.Epochs)-1]
		final = last
		if cfg.Patience > 0 && log.BestEpoch > 0 {
			copy(p.v, bestParams)
			rp.toModel(p, m)
			final = log.Epochs[log.BestEpoch-1]
		}
		if last.KernelZeroFraction >= 0.5 {
			log.Warnings = append(log.Warnings, fmt.Sprintf("in the last epoch %.1f%% of the off-diagonal kernel values in the MMD batches were below 1e-38, i.e. underflowed (sigma %s): the MMD term gave (almost) no gradient", 100*last.KernelZeroFraction, fmtList(sigmas)))
		}
	}
	log.Final = final.Train
	log.FinalDev = final.Dev
	log.EpochsRun = len(log.Epochs)

	if cfg.GateShift > 0 {
		for t := range m.b() {
			m.b()[t] -= cfg.GateShift
		}
	}
	evalPools, split := pools, "train"
	if devPools != nil {
		evalPools, split = devPools, "dev"
	}
	log.Eval = evaluate(m, evalPools, names, split, sigmas, cfg, newRand(cfg.Seed, streamEval))
	if nNeutral > 0 {
		for t, g := range meanGates(m, neutral, nNeutral) {
			log.Eval[t].GateNeutral = g
		}
	}
	for t, a := range data {
		at := Attribute{Name: a.Name, Theta: append([]float64(nil), m.thetaT(t)...)}
		if cfg.Method == MethodMATSteer {
			at.Gated = true
			at.GateW = append([]float64(nil), m.wT(t)...)
			at.GateB = m.b()[t]
		}
		f.Attributes = append(f.Attributes, at)
	}
	tr := f.Training
	tr["mode"] = cfg.Mode
	tr["sigma"] = cfg.Sigma.String()
	tr["sigma_values"] = fmtList(sigmas)
	tr["median_distance"] = fmtF(ks.Median)
	tr["lambda_mmd"] = "1"
	tr["mmd_norm"] = cfg.MMDNorm
	if o.mmdWeight != nil {
		tr["mmd_weight"] = fmtList(o.mmdWeight)
	}
	tr["lambda_pos"] = fmtF(cfg.LambdaPos)
	tr["lambda_sparse"] = fmtF(cfg.LambdaSparse)
	tr["lambda_ortho"] = fmtF(cfg.LambdaOrtho)
	if nNeutral > 0 {
		tr["lambda_neutral"] = fmtF(cfg.LambdaNeutral)
		tr["n_neutral"] = strconv.Itoa(nNeutral)
	}
	tr["lr"] = fmtF(cfg.LR)
	tr["optimizer"] = "adam(beta1=0.9,beta2=0.999,eps=1e-8)"
	tr["init"] = initString(cfg)
	tr["gate_input"] = cfg.GateInput
	if cfg.GateShift > 0 {
		tr["gate_shift"] = fmtF(cfg.GateShift)
	}
	tr["theta_init"] = cfg.ThetaInit
	tr["theta_scale"] = cfg.ThetaScale
	tr["epochs"] = strconv.Itoa(cfg.Epochs)
	tr["epochs_run"] = strconv.Itoa(log.EpochsRun)
	tr["steps_per_epoch"] = strconv.Itoa(stepsPerEpoch)
	tr["batch"] = strconv.Itoa(cfg.Batch)
	tr["seed"] = strconv.FormatUint(cfg.Seed, 10)
	tr["dev_fraction"] = fmtF(cfg.DevFraction)
	tr["patience"] = strconv.Itoa(cfg.Patience)
	if log.BestEpoch > 0 {
		tr["best_epoch"] = strconv.Itoa(log.BestEpoch)
	}
	if len(log.Epochs) > 0 {
		putLoss(tr, "loss.", final.Train)
	}
	if final.Dev != nil {
		putLoss(tr, "dev_loss.", *final.Dev)
	}
	return nil
}

func putLoss(m map[string]string, prefix string, l LossTerms) {
	m[prefix+"total"] = fmtF(l.Total)
	m[prefix+"mmd"] = fmtF(l.MMD)
	m[prefix+"pos"] = fmtF(l.Pos)
	m[prefix+"sparse"] = fmtF(l.Sparse)
	m[prefix+"ortho"] = fmtF(l.Ortho)
	if l.Neutral != 0 {
		m[prefix+"neutral"] = fmtF(l.Neutral)
	}
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func allFinite(v []float64) bool {
	return isFinite(floats.Sum(v)) || firstNonFinite(v) < 0
}

func initString(cfg TrainConfig) string {
	th := "theta~N(0,I)"
	switch cfg.ThetaInit {
	case ThetaInitScaled:
		th = "theta~N(0,s^2 I),s=|mean_pos-mean_neg|/sqrt(d)"
	case ThetaInitMeanDiff:
		th = "theta=mean_pos-mean_neg"
	}
	g := "gate_w,gate_b~U(-1/sqrt(d),1/sqrt(d))"
	if cfg.GateBiasInit != nil {
		g = "gate_w~U(-1/sqrt(d),1/sqrt(d)),gate_b=" + fmtF(*cfg.GateBiasInit)
	}
	if cfg.GateInput != GateInputRaw {
		g += " on the " + cfg.GateInput + "d gate input"
	}
	return th + "; " + g
}

// meanDiffFlat is mean(positives) − mean(negatives) of a pool.
func meanDiffFlat(pl pool, d int) []float64 {
	md := make([]float64, d)
	for i := 0; i < pl.nPos; i++ {
		floats.AddScaled(md, 1/float64(pl.nPos), pl.pos[i*d:(i+1)*d])
	}
	for i := 0; i < pl.nNeg; i++ {
		floats.AddScaled(md, -1/float64(pl.nNeg), pl.neg[i*d:(i+1)*d])
	}
	return md
}

// MMD normalisations (TrainConfig.MMDNorm).
const (
	// MMDNormNone uses MMD² as it is (the official code and the paper).
	MMDNormNone = "none"
	// MMDNormInitial divides attribute t's MMD term by MMD²(P_t, N_t) before
	// steering (unbiased estimate on up to 256+256 training rows, at the
	// training bandwidths; at least minMMDNorm).
	MMDNormInitial = "initial"
)

// minMMDNorm is the smallest divisor MMDNormInitial uses.
const minMMDNorm = 1e-4

// evalRows bounds the rows per side of the MMD in AttrEval.
const evalRows = 256

// evaluate fills the per-attribute evaluation of the TrainLog.
func evaluate(m params, pools []pool, names []string, split string, sigmas []float64, cfg TrainConfig, rng *rand.Rand) []AttrEval {
	d := m.d
	out := make([]AttrEval, len(pools))
	for t, pl := range pools {
		n := min(evalRows, pl.nPos, pl.nNeg)
		x := gather(nil, pl.pos, newCycler(pl.nPos, rng).take(n, rng), d)
		y := gather(nil, pl.neg, newCycler(pl.nNeg, rng).take(n, rng), d)
		_, _, ys := forward(m, y, n, cfg.NormPreserve, trainEps)
		gp, _, _ := forward(m, pl.pos, pl.nPos, false, 0)
		gn, _, _ := forward(m, pl.neg, pl.nNeg, false, 0)
		out[t] = AttrEval{
			Name: names[t], Split: split, EvalRows: n,
			MMDBefore: mmdValue(x, y, n, n, d, sigmas),
			MMDAfter:  mmdValue(x, ys, n, n, d, sigmas),
			GatePos:   meanCol(gp, m.T, t),
			GateNeg:   meanCol(gn, m.T, t),
		}
	}
	return out
}

func meanCol(v []float64, T, t int) float64 {
	s := 0.0
	for i := t; i < len(v); i += T {
		s += v[i]
	}
	return s / float64(len(v)/T)
}
