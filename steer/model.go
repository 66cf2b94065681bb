package steer

import (
	"math"

	"gonum.org/v1/gonum/floats"
)

// Loss modes.
const (
	ModeReference = "reference" // the official code's reductions
	ModePaper     = "paper"     // the paper's plain sums
)

// trainEps is added to ‖u‖ in training's norm preservation (as in the
// official code).
const trainEps = 1e-8

// params holds the trainable parameters in one flat slice:
// θ (T×d) | w (T×d) | b (T).
type params struct {
	T, d int
	v    []float64
}

func newParams(T, d int) params { return params{T: T, d: d, v: make([]float64, 2*T*d+T)} }

func (p params) theta() []float64 { return p.v[:p.T*p.d] }
func (p params) w() []float64     { return p.v[p.T*p.d : 2*p.T*p.d] }
func (p params) b() []float64     { return p.v[2*p.T*p.d:] }

func (p params) thetaT(t int) []float64 { return p.v[t*p.d : (t+1)*p.d] }
func (p params) wT(t int) []float64     { return p.v[(p.T+t)*p.d : (p.T+t+1)*p.d] }

// LossTerms are the loss terms of one step or an epoch average, after the
// mode's reductions and before the λ weights (and before the MMD
// normalisation of MMDNormInitial); Total includes the weights.
type LossTerms struct {
	Total  float64 `json:"total"`
	MMD    float64 `json:"mmd"`
	Pos    float64 `json:"pos"`
	Sparse float64 `json:"sparse"`
	Ortho  float64 `json:"ortho"`
	// Neutral is the gate penalty on neutral rows (TrainConfig.Neutral;
	// train loss only).
	Neutral float64 `json:"neutral,omitempty"`
}

func (l *LossTerms) add(o LossTerms, s float64) {
	l.Total += s * o.Total
	l.MMD += s * o.MMD
	l.Pos += s * o.Pos
	l.Sparse += s * o.Sparse
	l.Ortho += s * o.Ortho
	l.Neutral += s * o.Neutral
}

// objective describes the loss: mode, bandwidths, weights.
type objective struct {
	reference    bool
	sigmas       []float64
	lambdaPos    float64
	lambdaSparse float64
	lambdaOrtho  float64
	normPreserve bool
	// mmdWeight[t] multiplies attribute t's MMD term (nil: 1), e.g.
	// 1/MMD²(P_t, N_t) with MMDNormInitial.
	mmdWeight []float64
}

func (o *objective) mmdW(t int) float64 {
	if o.mmdWeight == nil {
		return 1
	}
	return o.mmdWeight[t]
}

// attrBatch is one attribute's rows for one step, gathered row-major.
type attrBatch struct {
	attr   int       // attribute index (its own gate)
	neg    []float64 // bn×d negatives (steered, MMD and sparsity)
	pos    []float64 // bp×d positives (preservation)
	mmdPos []float64 // nm×d positives the steered negatives are compared to
}

// attrWork is the scratch space and output of one attribute's share of a step.
type attrWork struct {
	zn, gn, gzn  []float64 // bn×T gate logits/gates/∂z of negatives
	zp, gzp      []float64 // bp×T positives
	u, yt        []float64 // bn×d pre-normalisation and steered negatives
	cy, cx       []float64 // T×bn, T×nm coefficients of ∂θ
	yth, xth     []float64 // bn×T, nm×T projections on θ
	ra, nu, cs   []float64 // bn norms and scale
	nx, ny       []float64 // squared row norms
	gxx, gyy     []float64 // Gram matrices
	gxy          []float64 // nm×bn
	a, bm        []float64 // bn×bn, bn×nm MMD gradient coefficients
	rsA, rsB     []float64
	grad         []float64 // gradient contribution (len params)
	mmd          float64   // MMD² of this attribute (unweighted)
	pos, sparse  float64   // reduced gate penalties (before λ)
	kZero, kPair int       // off-diagonal kernel entries below kernelTiny, and their count
}

func grow(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// matNT sets C (m×n) = beta·C + A (m×k) · Bᵀ (B is n×k).
func matNT(c []float64, beta float64, a, b []float64, m, n, k int) {
	for i := 0; i < m; i++ {
		ai := a[i*k : (i+1)*k]
		ci := c[i*n : (i+1)*n]
		for j := 0; j < n; j++ {
			v := floats.Dot(ai, b[j*k:(j+1)*k])
			if beta == 0 {
				ci[j] = v
			} else {
				ci[j] = beta*ci[j] + v
			}
		}
	}
}

// matNNAdd adds alpha · A (m×k) · B (k×n) to C (m×n).
func matNNAdd(c []float64, alpha float64, a, b []float64, m, n, k int) {
	for i := 0; i < m; i++ {
		ci := c[i*n : (i+1)*n]
		for l := 0; l < k; l++ {
			if v := a[i*k+l]; v != 0 {
				floats.AddScaled(ci, alpha*v, b[l*n:(l+1)*n])
			}
		}
	}
}

// matTNAdd adds Aᵀ · B to C, with A m×k, B m×n, C k×n.
func matTNAdd(c, a, b []float64, m, n, k int) {
	for l := 0; l < m; l++ {
		bl := b[l*n : (l+1)*n]
		for i := 0; i < k; i++ {
			if v := a[l*k+i]; v != 0 {
				floats.AddScaled(c[i*n:(i+1)*n], v, bl)
			}
		}
	}
}

// gramSym sets C (n×n) = X Xᵀ, computing each pair once.
func gramSym(c, x []float64, n, d int) {
	for i := 0; i < n; i++ {
		xi := x[i*d : (i+1)*d]
		for j := i; j < n; j++ {
			v := floats.Dot(xi, x[j*d:(j+1)*d])
			c[i*n+j], c[j*n+i] = v, v
		}
	}
}

func rowSqNorms(dst, x []float64, n, d int) {
	for i := 0; i < n; i++ {
		r := x[i*d : (i+1)*d]
		dst[i] = floats.Dot(r, r)
	}
}

// kernelTiny is the kernel value below which a pair counts as vanished: it
// is below float32's smallest normal number, so it underflows to 0 in the
// official (float32) code, and it carries no usable gradient here.
const kernelTiny = 1e-38

// kernelSum returns Σ exp(−γ·dist²) over an n×m block given squared norms
// and the Gram matrix, and optionally accumulates coef·k into acc (transposed
// when trans is set: acc[j*n+i]). diag marks a square block whose diagonal
// distance is exactly 0.
func kernelSum(gram, n1, n2 []float64, gamma float64, diag bool, acc []float64, coef float64, trans bool, zero *int) float64 {
	n, m := len(n1), len(n2)
	s := 0.0
	for i := 0; i < n; i++ {
		gi := gram[i*m : (i+1)*m]
		for j := 0; j < m; j++ {
			var k float64
			if diag && i == j {
				k = 1
			} else {
				d2 := n1[i] + n2[j] - 2*gi[j]
				if d2 < 0 {
					d2 = 0
				}
				k = math.Exp(-gamma * d2)
				if k < kernelTiny && zero != nil {
					*zero++
				}
			}
			s += k
			if acc != nil {
				if trans {
					acc[j*n+i] += coef * k
				} else {
					acc[i*m+j] += coef * k
				}
			}
		}
	}
	return s
}

// mmdValue returns MMD²(x, y) (biased V-statistic, diagonal included) summed
// over the bandwidths. x is n×d, y is m×d.
func mmdValue(x, y []float64, n, m, d int, sigmas []float64) float64 {
	kxx, kyy, kxy := mmdSums(x, y, n, m, d, sigmas)
	return kxx/float64(n*n) + kyy/float64(m*m) - 2*kxy/float64(n*m)
}

// mmdUnbiased returns the unbiased estimate (U-statistic, diagonal
// excluded) of MMD²(x, y) summed over the bandwidths; n, m >= 2.
func mmdUnbiased(x, y []float64, n, m, d int, sigmas []float64) float64 {
	kxx, kyy, kxy := mmdSums(x, y, n, m, d, sigmas)
	s := float64(len(sigmas)) // the diagonal: k(x, x) = 1 per bandwidth
	return (kxx-float64(n)*s)/float64(n*(n-1)) + (kyy-float64(m)*s)/float64(m*(m-1)) - 2*kxy/float64(n*m)
}

// mmdSums returns the kernel sums over x×x, y×y and x×y.
func mmdSums(x, y []float64, n, m, d int, sigmas []float64) (kxx, kyy, kxy float64) {
	nx, ny := make([]float64, n), make([]float64, m)
	rowSqNorms(nx, x, n, d)
	rowSqNorms(ny, y, m, d)
	gxx, gyy, gxy := make([]float64, n*n), make([]float64, m*m), make([]float64, n*m)
	matNT(gxx, 0, x, x, n, n, d)
	matNT(gyy, 0, y, y, m, m, d)
	matNT(gxy, 0, x, y, n, m, d)
	for _, s := range sigmas {
		g := 1 / (2 * s * s)
		kxx += kernelSum(gxx, nx, nx, g, true, nil, 0, false, nil)
		kyy += kernelSum(gyy, ny, ny, g, true, nil, 0, false, nil)
		kxy += kernelSum(gxy, nx, ny, g, false, nil, 0, false, nil)
	}
	return kxx, kyy, kxy
}

// norms gives the reductions of one step.
type norms struct {
	mmd, pos, sparse float64 // multipliers of the raw sums
}

func (o *objective) stepNorms(batches []attrBatch, d, T int) norms {
	if !o.reference {
		return norms{1, 1, 1}
	}
	nPos, nNeg := 0, 0
	for _, b := range batches {
		nPos += len(b.pos) / d
		nNeg += len(b.neg) / d
	}
	n := norms{mmd: 1 / float64(len(batches))}
	if nPos > 0 {
		n.pos = 1 / float64(nPos*T)
	}
	if nNeg > 0 {
		n.sparse = 1 / float64(nNeg*T)
	}
	return n
}

// stepNormsCounts is stepNorms from the selected row counts.
func (o *objective) stepNormsCounts(sel []selection, T int) norms {
	if !o.reference {
		return norms{1, 1, 1}
	}
	nPos, nNeg := 0, 0
	for _, s := range sel {
		nPos += len(s.pos)
		nNeg += len(s.neg)
	}
	return norms{mmd: 1 / float64(len(sel)), pos: 1 / float64(nPos*T), sparse: 1 / float64(nNeg*T)}
}

// attrLossGrad computes one attribute's loss terms and its gradient
// contribution (already weighted by λ and the reductions) into w.grad.
func (o *objective) attrLossGrad(p params, bt *attrBatch, nrm norms, w *attrWork) {
	T, d := p.T, p.d
	bn, bp, nm := len(bt.neg)/d, len(bt.pos)/d, len(bt.mmdPos)/d
	w.grad = grow(w.grad, len(p.v))
	clear(w.grad)
	gTheta := w.grad[:T*d]
	gW := w.grad[T*d : 2*T*d]
	gB := w.grad[2*T*d:]
	theta, wts, bias := p.theta(), p.w(), p.b()

	// Gates of the negatives and the steered negatives.
	w.zn = grow(w.zn, bn*T)
	w.gn = grow(w.gn, bn*T)
	matNT(w.zn, 0, bt.neg, wts, bn, T, d)
	for i := 0; i < bn; i++ {
		for t := 0; t < T; t++ {
			w.gn[i*T+t] = sigmoid(w.zn[i*T+t] + bias[t])
		}
	}
	w.u = grow(w.u, bn*d)
	copy(w.u, bt.neg)
	matNNAdd(w.u, 1, w.gn, theta, bn, d, T)
	w.yt = grow(w.yt, bn*d)
	w.ra = grow(w.ra, bn)
	w.nu = grow(w.nu, bn)
	w.cs = grow(w.cs, bn)
	if o.normPreserve {
		for i := 0; i < bn; i++ {
			y0 := bt.neg[i*d : (i+1)*d]
			ui := w.u[i*d : (i+1)*d]
			w.ra[i] = math.Sqrt(floats.Dot(y0, y0))
			w.nu[i] = math.Sqrt(floats.Dot(ui, ui))
			w.cs[i] = w.ra[i] / (w.nu[i] + trainEps)
			floats.ScaleTo(w.yt[i*d:(i+1)*d], w.cs[i], ui)
		}
	} else {
		copy(w.yt, w.u)
	}

	// MMD²(mmdPos, yt) and its gradient with respect to yt.
	x, y := bt.mmdPos, w.yt
	w.nx, w.ny = grow(w.nx, nm), grow(w.ny, bn)
	w.gxx, w.gyy, w.gxy = grow(w.gxx, nm*nm), grow(w.gyy, bn*bn), grow(w.gxy, nm*bn)
	gramSym(w.gxx, x, nm, d)
	gramSym(w.gyy, y, bn, d)
	for i := range w.nx {
		w.nx[i] = w.gxx[i*nm+i]
	}
	for i := range w.ny {
		w.ny[i] = w.gyy[i*bn+i]
	}
	matNT(w.gxy, 0, x, y, nm, bn, d)
	w.a, w.bm = grow(w.a, bn*bn), grow(w.bm, bn*nm)
	clear(w.a)
	clear(w.bm)
	w.kZero, w.kPair = 0, bn*(bn-1)+nm*bn
	w.mmd = 0
	fn, fm := float64(nm), float64(bn)
	widest := 0
	for k, s := range o.sigmas {
		if s > o.sigmas[widest] {
			widest = k
		}
	}
	for k, s := range o.sigmas {
		g := 1 / (2 * s * s)
		s2 := s * s
		// Underflow is counted for the widest kernel only: if it is 0, all are.
		var zero *int
		if k == widest {
			zero = &w.kZero
		}
		kxx := kernelSum(w.gxx, w.nx, w.nx, g, true, nil, 0, false, nil)
		kyy := kernelSum(w.gyy, w.ny, w.ny, g, true, w.a, 2/(fm*fm*s2), false, zero)
		kxy := kernelSum(w.gxy, w.nx, w.ny, g, false, w.bm, 2/(fn*fm*s2), true, zero)
		w.mmd += kxx/(fn*fn) + kyy/(fm*fm) - 2*kxy/(fn*fm)
	}
	w.rsA, w.rsB = grow(w.rsA, bn), grow(w.rsB, bn)
	for i := 0; i < bn; i++ {
		w.rsA[i] = floats.Sum(w.a[i*bn : (i+1)*bn])
		w.rsB[i] = floats.Sum(w.bm[i*nm : (i+1)*nm])
	}
	// Gradient of the MMD with respect to the steered rows y_i:
	//   ∂/∂y_i = Σ_j A_ij y_j − Σ_p B_ip x_p + r_i y_i,  r_i = Σ_p B_ip − Σ_j A_ij,
	// and through ã = c·u (c = ‖a‖/(‖u‖+ε)) to u:
	//   ∂/∂u_i = c_i ∂/∂y_i − s_i u_i,  s_i = (∂/∂y_i·u_i)·‖a_i‖/((‖u_i‖+ε)²‖u_i‖).
	// With u_i = y_i/c_i this is ∂/∂u_i = Σ_j P_ij y_j − Σ_p Q_ip x_p with
	// P = diag(c)(A + diag(r)) − diag(s/c) and Q = diag(c)·B. Every dot product
	// it needs is already in the Gram matrices, so P and Q overwrite A and B
	// and the d-dimensional work is only T·(bn+nm) vector updates.
	wm := nrm.mmd * o.mmdW(bt.attr)
	P, Q := w.a, w.bm
	for i := 0; i < bn; i++ {
		pi, qi := P[i*bn:(i+1)*bn], Q[i*nm:(i+1)*nm]
		r := w.rsB[i] - w.rsA[i]
		ci, diag := 1.0, 0.0
		if o.normPreserve {
			ci = w.cs[i]
			if ci == 0 { // a zero row stays zero: no gradient
				clear(pi)
				clear(qi)
				continue
			}
			if n := w.nu[i]; n > 0 {
				// q = ∂/∂y_i · u_i, using u_i·v = (y_i·v)/c_i.
				q := r * w.gyy[i*bn+i]
				for j, a := range pi {
					q += a * w.gyy[i*bn+j]
				}
				for p, b := range qi {
					q -= b * w.gxy[p*bn+i]
				}
				q *= wm / ci
				den := n + trainEps
				diag = -q * w.ra[i] / (den * den * n) / ci
			}
		}
		f := wm * ci
		floats.Scale(f, pi)
		floats.Scale(f, qi)
		pi[i] += f*r + diag
	}
	// ∂θ_t = Σ_i g_it ∂/∂u_i = Σ_j (GᵀP)_tj y_j − Σ_p (GᵀQ)_tp x_p
	w.cy, w.cx = grow(w.cy, T*bn), grow(w.cx, T*nm)
	clear(w.cy)
	clear(w.cx)
	matTNAdd(w.cy, w.gn, P, bn, bn, T)
	matTNAdd(w.cx, w.gn, Q, bn, nm, T)
	for t := 0; t < T; t++ {
		gt := gTheta[t*d : (t+1)*d]
		for j := 0; j < bn; j++ {
			if v := w.cy[t*bn+j]; v != 0 {
				floats.AddScaled(gt, v, y[j*d:(j+1)*d])
			}
		}
		for p := 0; p < nm; p++ {
			if v := w.cx[t*nm+p]; v != 0 {
				floats.AddScaled(gt, -v, x[p*d:(p+1)*d])
			}
		}
	}
	// ∂g_it = ∂/∂u_i · θ_t = Σ_j P_ij (y_j·θ_t) − Σ_p Q_ip (x_p·θ_t)
	w.yth, w.xth = grow(w.yth, bn*T), grow(w.xth, nm*T)
	matNT(w.yth, 0, y, theta, bn, T, d)
	matNT(w.xth, 0, x, theta, nm, T, d)
	w.gzn = grow(w.gzn, bn*T)
	clear(w.gzn)
	matNNAdd(w.gzn, 1, P, w.yth, bn, T, bn)
	matNNAdd(w.gzn, -1, Q, w.xth, bn, T, nm)
	w.sparse = 0
	for i := 0; i < bn; i++ {
		for t := 0; t < T; t++ {
			k := i*T + t
			g := w.gn[k]
			dz := w.gzn[k]
			if o.reference || t == bt.attr {
				w.sparse += g // |g| = g for a sigmoid
				dz += o.lambdaSparse * nrm.sparse
			}
			w.gzn[k] = dz * g * (1 - g)
			gB[t] += w.gzn[k]
		}
	}
	w.sparse *= nrm.sparse
	matTNAdd(gW, w.gzn, bt.neg, bn, d, T)

	// Preservation penalty on the positives' gates.
	w.zp = grow(w.zp, bp*T)
	w.gzp = grow(w.gzp, bp*T)
	matNT(w.zp, 0, bt.pos, wts, bp, T, d)
	w.pos = 0
	for i := 0; i < bp; i++ {
		for t := 0; t < T; t++ {
			k := i*T + t
			w.gzp[k] = 0
			if o.reference || t == bt.attr {
				g := sigmoid(w.zp[k] + bias[t])
				w.pos += g * g
				w.gzp[k] = o.lambdaPos * nrm.pos * 2 * g * g * (1 - g)
				gB[t] += w.gzp[k]
			}
		}
	}
	w.pos *= nrm.pos
	matTNAdd(gW, w.gzp, bt.pos, bp, d, T)
}

// orthoLossGrad returns Σ_{t<t'} cos²(θ_t, θ_t') (×2 in paper mode, which sums
// ordered pairs) and adds λ_ortho times its gradient to grad[:T·d].
func (o *objective) orthoLossGrad(p params, grad []float64) float64 {
	T, d := p.T, p.d
	mult := 1.0
	if !o.reference {
		mult = 2
	}
	loss := 0.0
	for i := 0; i < T; i++ {
		ti := p.thetaT(i)
		ni := math.Sqrt(floats.Dot(ti, ti))
		for j := i + 1; j < T; j++ {
			tj := p.thetaT(j)
			nj := math.Sqrt(floats.Dot(tj, tj))
			if ni == 0 || nj == 0 {
				continue
			}
			c := floats.Dot(ti, tj) / (ni * nj)
			loss += mult * c * c
			// ∂cos/∂θ_i = θ_j/(‖θ_i‖‖θ_j‖) − cos·θ_i/‖θ_i‖²
			f := o.lambdaOrtho * mult * 2 * c
			gi, gj := grad[i*d:(i+1)*d], grad[j*d:(j+1)*d]
			floats.AddScaled(gi, f/(ni*nj), tj)
			floats.AddScaled(gi, -f*c/(ni*ni), ti)
			floats.AddScaled(gj, f/(ni*nj), ti)
			floats.AddScaled(gj, -f*c/(nj*nj), tj)
		}
	}
	return loss
}

// lossGrad evaluates the full objective on batches serially, writing the
// gradient into grad (len(p.v)). It is the reference path used by tests; the
// trainer runs the per-attribute parts in parallel with the same arithmetic.
func (o *objective) lossGrad(p params, batches []attrBatch, work []attrWork, grad []float64) LossTerms {
	nrm := o.stepNorms(batches, p.d, p.T)
	for i := range batches {
		o.attrLossGrad(p, &batches[i], nrm, &work[i])
	}
	return o.combine(p, work[:len(batches)], nrm, grad)
}

// combine sums the per-attribute results in a fixed order and adds the
// orthogonality term.
func (o *objective) combine(p params, work []attrWork, nrm norms, grad []float64) LossTerms {
	clear(grad)
	var lt LossTerms
	weighted := 0.0
	for i := range work {
		floats.Add(grad, work[i].grad)
		lt.MMD += work[i].mmd
		weighted += o.mmdW(i) * work[i].mmd
		lt.Pos += work[i].pos
		lt.Sparse += work[i].sparse
	}
	lt.MMD *= nrm.mmd
	if o.mmdWeight != nil {
		weighted *= nrm.mmd
	} else {
		weighted = lt.MMD
	}
	lt.Ortho = o.orthoLossGrad(p, grad)
	lt.Total = weighted + o.lambdaPos*lt.Pos + o.lambdaSparse*lt.Sparse + o.lambdaOrtho*lt.Ortho
	return lt
}

// adam is PyTorch's Adam (betas 0.9/0.999, eps 1e-8, no weight decay),
// written in the same order of operations.
type adam struct {
	lr, beta1, beta2, eps float64
	m, v                  []float64
	step                  int
}

func newAdam(n int, lr float64) *adam {
	return &adam{lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, m: make([]float64, n), v: make([]float64, n)}
}

func (a *adam) update(p, g []float64) {
	a.step++
	bc1 := 1 - math.Pow(a.beta1, float64(a.step))
	bc2 := 1 - math.Pow(a.beta2, float64(a.step))
	stepSize := a.lr / bc1
	bc2Sqrt := math.Sqrt(bc2)
	for i, gi := range g {
		a.m[i] += (gi - a.m[i]) * (1 - a.beta1)
		a.v[i] = a.v[i]*a.beta2 + (1-a.beta2)*gi*gi
		denom := math.Sqrt(a.v[i])/bc2Sqrt + a.eps
		p[i] += -stepSize * (a.m[i] / denom)
	}
}

// forward steers n rows of x (n×d) with p in float64: it returns the gates
// (n×T), the unnormalised rows u and the steered rows (u rescaled to ‖a‖ when
// normPreserve, with eps added to ‖u‖).
func forward(p params, x []float64, n int, normPreserve bool, eps float64) (gates, u, out []float64) {
	T, d := p.T, p.d
	gates = make([]float64, n*T)
	matNT(gates, 0, x, p.w(), n, T, d)
	for i := range gates {
		gates[i] = sigmoid(gates[i] + p.b()[i%T])
	}
	u = append([]float64(nil), x[:n*d]...)
	matNNAdd(u, 1, gates, p.theta(), n, d, T)
	out = append([]float64(nil), u...)
	if normPreserve {
		for i := 0; i < n; i++ {
			a, ui := x[i*d:(i+1)*d], u[i*d:(i+1)*d]
			c := math.Sqrt(floats.Dot(a, a)) / (math.Sqrt(floats.Dot(ui, ui)) + eps)
			floats.ScaleTo(out[i*d:(i+1)*d], c, ui)
		}
	}
	return gates, u, out
}
