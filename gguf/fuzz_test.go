package gguf

import (
	"math"
	"reflect"
	"testing"
)

// FuzzRead checks that Parse never panics, and that whatever it accepts
// survives a Marshal/Parse round trip unchanged.
func FuzzRead(f *testing.F) {
	good, err := sampleFile().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	aligned := sampleFile()
	aligned.Set(KeyAlignment, uint32(8))
	if b, err := aligned.Marshal(); err == nil {
		f.Add(b)
	}
	empty, _ := (&File{}).Marshal()
	f.Add(empty)
	f.Add(good[:40])
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data)
		if err != nil {
			return
		}
		out, err := g.Marshal()
		if err != nil {
			t.Fatalf("parsed file does not marshal: %v", err)
		}
		h, err := Parse(out)
		if err != nil {
			t.Fatalf("re-marshalled file does not parse: %v", err)
		}
		if !reflect.DeepEqual(normKV(g.KV), normKV(h.KV)) || len(g.Tensors) != len(h.Tensors) {
			t.Fatalf("round trip changed the file")
		}
		for i := range g.Tensors {
			a, b := g.Tensors[i], h.Tensors[i]
			if a.Name != b.Name || a.Type != b.Type || !reflect.DeepEqual(a.Dims, b.Dims) || string(a.Data) != string(b.Data) {
				t.Fatalf("tensor %d changed in the round trip", i)
			}
		}
	})
}

// normKV makes floats comparable by their bits (NaN != NaN otherwise).
func normKV(kvs []KV) []KV {
	out := make([]KV, len(kvs))
	for i, kv := range kvs {
		out[i] = KV{kv.Key, normValue(kv.Value)}
	}
	return out
}

func normValue(v any) any {
	switch x := v.(type) {
	case float32:
		return math.Float32bits(x)
	case float64:
		return math.Float64bits(x)
	case []float32:
		o := make([]uint32, len(x))
		for i, e := range x {
			o[i] = math.Float32bits(e)
		}
		return o
	case []float64:
		o := make([]uint64, len(x))
		for i, e := range x {
			o[i] = math.Float64bits(e)
		}
		return o
	case []any:
		o := make([]any, len(x))
		for i, e := range x {
			o[i] = normValue(e)
		}
		return o
	}
	return v
}
