package steer

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/floats"
)

// PCA power-iteration limits.
const (
	pcaMaxIter = 1000
	pcaTol     = 1e-10
)

// baseline fills f with the mean-difference or PCA baseline: one ungated
// vector per attribute, applied to every token.
//
// mean-diff: θ = mean(P) − mean(N).
// pca: the first principal component v of the paired differences
// P[i] − N[i] (i < min(|P|,|N|), uncentred, as llama.cpp's cvector-generator
// does), sign-aligned with the mean difference and scaled to the mean
// difference's projection on it: θ = (Δ̄·v) v, so that it has the same
// scale as the mean-difference vector.
func baseline(ctx context.Context, data []AttributeData, pools []pool, d int, cfg TrainConfig, f *File, log *TrainLog) error {
	log.Details = map[string]float64{}
	for t, pl := range pools {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := data[t].Name
		mp, mn := make([]float64, d), make([]float64, d)
		for i := 0; i < pl.nPos; i++ {
			floats.Add(mp, pl.pos[i*d:(i+1)*d])
		}
		for i := 0; i < pl.nNeg; i++ {
			floats.Add(mn, pl.neg[i*d:(i+1)*d])
		}
		floats.Scale(1/float64(pl.nPos), mp)
		floats.Scale(1/float64(pl.nNeg), mn)
		diff := make([]float64, d)
		floats.SubTo(diff, mp, mn)
		theta := diff
		if cfg.Method == MethodPCA {
			v, explained, iters, err := pairedPCA(ctx, pl, d, diff)
			if err != nil {
				return fmt.Errorf("attribute %q: %w", name, err)
			}
			proj := floats.Dot(diff, v)
			if proj < 0 {
				floats.Scale(-1, v)
				proj = -proj
			}
			theta = make([]float64, d)
			floats.ScaleTo(theta, proj, v)
			key := "pca." + strconv.Itoa(t)
			f.Training[key+".explained"] = fmtF(explained)
			f.Training[key+".iterations"] = strconv.Itoa(iters)
			log.Details[name+".explained"] = explained
			log.Details[name+".iterations"] = float64(iters)
			if iters >= pcaMaxIter {
				log.Warnings = append(log.Warnings, fmt.Sprintf("attribute %q: PCA power iteration did not converge in %d iterations (small eigengap)", name, pcaMaxIter))
			}
		}
		f.Attributes = append(f.Attributes, Attribute{Name: name, Theta: theta})
	}
	if cfg.Method == MethodPCA {
		f.Training["pca.pairs"] = "index order, min(|P|,|N|) pairs"
	}
	return nil
}

// pairedPCA returns the unit first principal direction of the uncentred
// differences P[i]−N[i], the fraction of the second moment it explains and
// the number of power iterations used. start seeds the iteration.
func pairedPCA(ctx context.Context, pl pool, d int, start []float64) ([]float64, float64, int, error) {
	n := min(pl.nPos, pl.nNeg)
	diffs := make([]float64, n*d)
	trace := 0.0
	for i := 0; i < n; i++ {
		r := diffs[i*d : (i+1)*d]
		floats.SubTo(r, pl.pos[i*d:(i+1)*d], pl.neg[i*d:(i+1)*d])
		trace += floats.Dot(r, r)
	}
	if trace == 0 {
		return nil, 0, 0, fmt.Errorf("all paired differences are zero")
	}
	v := append([]float64(nil), start...)
	if floats.Norm(v, 2) == 0 {
		for i := 0; i < n; i++ {
			if r := diffs[i*d : (i+1)*d]; floats.Norm(r, 2) > 0 {
				copy(v, r)
				break
			}
		}
	}
	floats.Scale(1/floats.Norm(v, 2), v)
	proj := make([]float64, n)
	next := make([]float64, d)
	lambda := 0.0
	iter := 0
	for iter = 1; iter <= pcaMaxIter; iter++ {
		if iter%32 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, 0, 0, err
			}
		}
		for i := 0; i < n; i++ {
			proj[i] = floats.Dot(diffs[i*d:(i+1)*d], v)
		}
		clear(next)
		for i := 0; i < n; i++ {
			floats.AddScaled(next, proj[i], diffs[i*d:(i+1)*d])
		}
		lambda = floats.Norm(next, 2)
		if lambda == 0 {
			return nil, 0, 0, fmt.Errorf("power iteration collapsed to zero")
		}
		floats.Scale(1/lambda, next)
		delta := 0.0
		for j := range v {
			delta = math.Max(delta, math.Abs(next[j]-v[j]))
		}
		v, next = next, v
		if delta < pcaTol {
			break
		}
	}
	return v, lambda / trace, min(iter, pcaMaxIter), nil
}
