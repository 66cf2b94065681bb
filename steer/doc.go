// Package steer implements MAT-Steer (Nguyen et al., arXiv 2502.12446):
// multi-attribute, token-gated activation steering, in pure Go.
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
// Training has two loss modes. "reference" reproduces the official code's
// reductions (MMD averaged over attributes, gate penalties averaged over all
// batch rows × all gates, orthogonality over unordered pairs, MMD positives
// a fresh sample of the attribute's positive pool each step); "paper" uses the
// plain sums of the paper's equations.
package steer
