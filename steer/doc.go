// Package steer implements MAT-Steer (Nguyen et al., arXiv 2502.12446):
// multi-attribute, token-gated activation steering, in pure Go.
//
// The root package matsteer trains, reads and applies steering files in a
// few calls (Model.Train, ReadSteering, Steer); use this package for the
// training options, baselines and the file format itself.
//
// For T attributes, attribute t has a steering vector θ_t and a gate
// g_t(a) = σ(w_t·a + b_t) computed from the unmodified activation a. A row is
// steered as
//
//	u = a + α Σ_t s_t g_t θ_t
//	ã = u ‖a‖/‖u‖            (norm preservation, optional)
//
// with per-attribute strengths s_t and a global strength α. Ungated
// attributes (baselines, imported control vectors) use g_t = 1.
//
// The package holds four pieces:
//
//   - [File]: the steering file, a GGUF container with its own
//     general.architecture "matsteer" (see [ReadFile], [File.WriteFile]).
//   - [Applier]: the per-token hot path that edits float32 rows in place.
//   - [Train]: MAT-Steer training with analytic gradients and Adam, plus the
//     mean-difference, PCA and all-tokens baselines.
//   - Control-vector export/import for llama.cpp ([ExportControlVector],
//     [ImportControlVector]).
//
// This package does not touch a model: package intervene applies a file to a
// running llama.cpp context, and package extract captures the activations
// that training reads.
//
// Training has two loss modes. "reference" reproduces the official code's
// reductions (MMD averaged over attributes, gate penalties averaged over all
// batch rows × all gates, orthogonality over unordered pairs, MMD positives
// a fresh sample of the attribute's positive pool each step); "paper" uses the
// plain sums of the paper's equations.
//
// # Training on real activations
//
// [ReferenceTrainConfig] is the official code's setting (σ = 2, θ ~ N(0, I),
// gate weights ~ U(±1/√d) on raw activations, MMD as it is); it reproduces the
// official numbers exactly. On residual-stream activations it learns nothing.
// Measured on SmolLM2-135M, layer 12 (demo data, positivity and formality;
// row norms median 138, first-token "attention sink" rows up to 24,000 on one
// dimension): the MMD stays at its first-epoch value, all gates close (mean
// gate < 1e-3 on positives and negatives), |θ| stays at its init norm 24 and
// MMD² between positives and steered negatives does not move. Three causes:
//
//   - Kernel bandwidth: pairwise distances are ~140, so σ = 2 underflows
//     (see [Sigma]); the default is the median heuristic.
//   - θ initialisation: a random θ is a random direction of norm √d; Adam
//     with lr 1e-3 moves each coordinate by ~1e-3 per step, so turning it takes
//     far longer than the 1,200 steps of the official schedule, and meanwhile
//     opening a gate along θ only hurts the MMD, so the gates close. The
//     default starts θ_t at the attribute's mean difference μ_t^p − μ_t^n
//     ([ThetaInitMeanDiff]); training then refines θ and learns the gates.
//   - Loss scale: MMD² between real positives and negatives is small (0.005 to
//     0.04 at the median bandwidth: the classes overlap, and with every
//     token ~40% of rows are prompt tokens identical in both), so the gate
//     penalties at λ = 0.9 outweigh any MMD gain and close every gate, even
//     with a good θ. [MMDNormInitial] divides each attribute's MMD term by its
//     unsteered MMD² (unbiased, 256+256 rows), so that the paper's λ weights
//     are relative to what steering can gain. This only reweights the loss.
//
// Each of the three is needed: on the LLM-scale synthetic data of
// TestTrainLLMScale, dropping any one of them from [DefaultTrainConfig] leaves
// the gates on the shifted negatives as low as on the positives (≤ 0.25).
// Results on the demo activations with the defaults (mean gate on positives
// vs negatives; MMD² before → after steering, 256+256 rows): every token:
// formality 0.014 vs 0.52, 0.014 → 0.004; positivity 0.074 vs 0.35, 0.005 →
// 0.002; response tokens: formality 0.004 vs 0.62, 0.038 → 0.004; positivity
// 0.030 vs 0.54, 0.008 → 0.002. The training log's Eval reports these numbers
// for every run.
//
// The gate is trained on RMS-scaled inputs a/r, r = median row norm/√d
// ([GateInputScale], folded back into w and b: the file and the applier are
// unchanged). Measured on the demo activations: with raw inputs the learned
// gates are nearly binary and seldom open on generated tokens (strength 4
// barely changes the text), while the scaled gates give the same separation
// on the training rows and a clear effect when generating. Per-dimension
// standardisation ([GateInputStandardize]) is an option but saturates the
// gate open (g = 1) on the attention-sink first-token rows, whose
// standardised coordinates are huge. [ThetaScaleData] (θ trained in units of
// the RMS coordinate) is an option that measured no better.
//
// # Beyond the paper: neutral rows and warm starts
//
// Two training options are not in the paper. [TrainConfig.Neutral] with
// LambdaNeutral > 0 adds a sparsity penalty on every gate over rows of
// ordinary text, so that gates stay shut where nothing needs steering (the
// paper's losses only see each attribute's positives and negatives);
// [TrainConfig.Shared] takes rows an attribute has on both sides (the shared
// prompt of paired examples, when training on every token) out of its
// positives and negatives, optionally as neutral rows. [TrainConfig.Init] continues training from an existing steering file
// (a feedback loop: refine it with new examples, add attributes); zero
// epochs return the file's values exactly. See [Train].
package steer
