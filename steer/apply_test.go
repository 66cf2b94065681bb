package steer

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func randF32Rows(rng *rand.Rand, n, d int) []float32 {
	rows := make([]float32, n*d)
	for i := range rows {
		rows[i] = float32(2 * rng.NormFloat64())
	}
	return rows
}

func TestApplyMatchesFloat64(t *testing.T) {
	const d, n = 32, 7
	rng := rand.New(rand.NewPCG(3, 4))
	f := testFile(d)
	for i := range f.Attributes {
		for j := range f.Attributes[i].GateW {
			f.Attributes[i].GateW[j] = 0.2 * rng.NormFloat64()
		}
	}
	f.Attributes = append(f.Attributes, Attribute{Name: "plain", Theta: make([]float64, d)})
	for j := range f.Attributes[2].Theta {
		f.Attributes[2].Theta[j] = rng.NormFloat64()
	}
	strengths := map[string]float64{"truth": 0.5, "plain": 2}
	const global = 1.5
	for _, np := range []bool{true, false} {
		f.NormPreserve = np
		ap, err := NewApplier(f, ApplyOptions{Global: global, Strengths: strengths})
		if err != nil {
			t.Fatal(err)
		}
		rows := randF32Rows(rng, n, d)
		orig := append([]float32(nil), rows...)
		gates := make([]float32, n*3)
		dn := make([]float32, n)
		ap.Apply(rows, gates, dn)
		for r := 0; r < n; r++ {
			a := make([]float64, d)
			for j := range a {
				a[j] = float64(orig[r*d+j])
			}
			u := append([]float64(nil), a...)
			for ti, at := range f.Attributes {
				g := 1.0
				if at.Gated {
					z := at.GateB
					for j := range a {
						z += at.GateW[j] * a[j]
					}
					g = sigmoid(z)
				}
				near(t, "gate", float64(gates[r*3+ti]), g, 1e-6)
				s := global
				if v, ok := strengths[at.Name]; ok {
					s *= v
				}
				for j := range u {
					u[j] += s * g * at.Theta[j]
				}
			}
			if np {
				na, nu := 0.0, 0.0
				for j := range a {
					na += a[j] * a[j]
					nu += u[j] * u[j]
				}
				for j := range u {
					u[j] *= math.Sqrt(na / nu)
				}
			}
			dd := 0.0
			for j := range u {
				near(t, "row", float64(rows[r*d+j]), u[j], 1e-5)
				dd += (u[j] - a[j]) * (u[j] - a[j])
			}
			near(t, "delta norm", float64(dn[r]), math.Sqrt(dd), 1e-5)
		}
	}
}

func TestApplyZeroIsBitIdentical(t *testing.T) {
	const d = 16
	f := testFile(d)
	rng := rand.New(rand.NewPCG(1, 2))
	rows := randF32Rows(rng, 5, d)
	rows[3] = float32(math.Copysign(0, -1)) // −0 must survive
	orig := append([]float32(nil), rows...)
	for _, opts := range []ApplyOptions{
		{Global: 0},
		{Global: 1, Strengths: map[string]float64{"truth": 0, "tox": 0}},
	} {
		ap, err := NewApplier(f, opts)
		if err != nil {
			t.Fatal(err)
		}
		gates := make([]float32, 10)
		dn := []float32{9, 9, 9, 9, 9}
		ap.Apply(rows, gates, dn)
		for i := range rows {
			if math.Float32bits(rows[i]) != math.Float32bits(orig[i]) {
				t.Fatalf("%+v: value %d changed from %v to %v", opts, i, orig[i], rows[i])
			}
		}
		for i, v := range dn {
			if v != 0 {
				t.Fatalf("delta norm %d = %v, want 0", i, v)
			}
		}
		if gates[2] == 0 {
			t.Fatal("gates are still reported when strengths are 0")
		}
	}
	// A zero θ with a strength also leaves rows alone.
	g := testFile(d)
	g.NormPreserve = true
	for i := range g.Attributes {
		g.Attributes[i].Theta = make([]float64, d)
	}
	ap, err := NewApplier(g, DefaultApplyOptions())
	if err != nil {
		t.Fatal(err)
	}
	rows2 := append([]float32(nil), orig...)
	ap.Apply(rows2, nil, nil)
	for i := range rows2 {
		if math.Float32bits(rows2[i]) != math.Float32bits(orig[i]) {
			t.Fatalf("zero θ changed value %d", i)
		}
	}
}

func TestApplyOptionsErrors(t *testing.T) {
	f := testFile(4)
	for _, c := range []struct {
		opts ApplyOptions
		want string
	}{
		{ApplyOptions{Global: math.NaN()}, "global strength NaN"},
		{ApplyOptions{Global: -1}, "global strength -1"},
		{ApplyOptions{Global: 1001}, "global strength 1001"},
		{ApplyOptions{Global: 1, Strengths: map[string]float64{"nope": 1}}, `unknown attribute "nope"`},
		{ApplyOptions{Global: 1, Strengths: map[string]float64{"tox": math.Inf(1)}}, `attribute "tox" strength +Inf`},
		{ApplyOptions{Global: 1, Strengths: map[string]float64{"tox": -0.5}}, `attribute "tox" strength -0.5`},
	} {
		if _, err := NewApplier(f, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
	bad := testFile(4)
	bad.NEmbd = 5
	if _, err := NewApplier(bad, DefaultApplyOptions()); err == nil {
		t.Fatal("invalid file accepted")
	}
}

func TestApplierAccessorsAndPanics(t *testing.T) {
	f := testFile(4)
	ap, err := NewApplier(f, DefaultApplyOptions())
	if err != nil {
		t.Fatal(err)
	}
	if ap.NEmbd() != 4 || strings.Join(ap.Attributes(), ",") != "truth,tox" {
		t.Fatalf("NEmbd %d, attributes %v", ap.NEmbd(), ap.Attributes())
	}
	c := ap.Clone()
	r1 := []float32{1, 2, 3, 4}
	r2 := []float32{1, 2, 3, 4}
	ap.Apply(r1, nil, nil)
	c.Apply(r2, nil, nil)
	for i := range r1 {
		if r1[i] != r2[i] {
			t.Fatal("clone steers differently")
		}
	}
	for _, fn := range []func(){
		func() { ap.Apply(make([]float32, 5), nil, nil) },
		func() { ap.Apply(make([]float32, 8), make([]float32, 3), nil) },
		func() { ap.Apply(make([]float32, 8), nil, make([]float32, 1)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic on a bad length")
				}
			}()
			fn()
		}()
	}
}

func TestApplyDoesNotAllocate(t *testing.T) {
	f := testFile(64)
	ap, err := NewApplier(f, DefaultApplyOptions())
	if err != nil {
		t.Fatal(err)
	}
	rows := randF32Rows(rand.New(rand.NewPCG(1, 1)), 32, 64)
	gates := make([]float32, 64)
	dn := make([]float32, 32)
	if n := testing.AllocsPerRun(20, func() { ap.Apply(rows, gates, dn) }); n != 0 {
		t.Fatalf("Apply allocates %v times per call", n)
	}
}

func TestParseStrengths(t *testing.T) {
	got, err := ParseStrengths([]string{"truth=1.5", "tox=0, bias=2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["truth"] != 1.5 || got["tox"] != 0 || got["bias"] != 2 {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{"truth", "truth=x", "=1", "a=1,a=2", "a=-1", "a=NaN", "a=1e4"} {
		if _, err := ParseStrengths([]string{bad}); err == nil {
			t.Errorf("ParseStrengths(%q) succeeded", bad)
		}
	}
}
