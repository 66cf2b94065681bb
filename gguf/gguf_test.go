package gguf

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sampleFile() *File {
	return &File{
		Version: Version,
		KV: []KV{
			{"general.architecture", "controlvector"},
			{"u8", uint8(200)},
			{"i8", int8(-5)},
			{"u16", uint16(60000)},
			{"i16", int16(-30000)},
			{"u32", uint32(4000000000)},
			{"i32", int32(-2000000000)},
			{"u64", uint64(1) << 63},
			{"i64", int64(-1) << 62},
			{"f32", float32(1.5)},
			{"f64", math.Pi},
			{"b", true},
			{"s", "héllo"},
			{"a.u8", []uint8{1, 2, 3}},
			{"a.i32", []int32{-1, 0, 1}},
			{"a.f32", []float32{0.25, -8}},
			{"a.f64", []float64{1e300}},
			{"a.bool", []bool{true, false}},
			{"a.str", []string{"x", "", "yz"}},
			{"a.empty", []int64{}},
			{"a.nested", []any{[]string{"p"}, []uint16{7, 8}}},
		},
		Tensors: []Tensor{
			NewF32Tensor("direction.1", []float32{1, 2, 3}),
			NewF32Tensor("m", []float32{1, 2, 3, 4, 5, 6}, 3, 2),
			NewF32Tensor("one", []float32{-7}),
		},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 8, 64} {
		f := sampleFile()
		if align != 0 {
			f.Set(KeyAlignment, align)
		}
		data, err := f.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		g, err := Parse(data)
		if err != nil {
			t.Fatalf("align %d: %v", align, err)
		}
		if !reflect.DeepEqual(f.KV, g.KV) {
			t.Fatalf("align %d: KV mismatch\n got %#v\nwant %#v", align, g.KV, f.KV)
		}
		if len(g.Tensors) != len(f.Tensors) {
			t.Fatalf("got %d tensors", len(g.Tensors))
		}
		a := uint64(align)
		if a == 0 {
			a = DefaultAlignment
		}
		for i := range f.Tensors {
			ft, gt := f.Tensors[i], g.Tensors[i]
			if ft.Name != gt.Name || !reflect.DeepEqual(ft.Dims, gt.Dims) || ft.Type != gt.Type || string(ft.Data) != string(gt.Data) {
				t.Fatalf("tensor %d differs: %+v vs %+v", i, gt, ft)
			}
		}
		// Absolute alignment: find each tensor's data in the file.
		for _, tt := range g.Tensors {
			off := uint64(sliceOffset(data, tt.Data))
			if off%a != 0 {
				t.Fatalf("tensor %s at offset %d not aligned to %d", tt.Name, off, a)
			}
		}
		vals, err := g.Tensor("m").Float32s()
		if err != nil || !reflect.DeepEqual(vals, []float32{1, 2, 3, 4, 5, 6}) {
			t.Fatalf("Float32s = %v, %v", vals, err)
		}
		again, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(data) {
			t.Fatalf("re-marshal differs")
		}
	}
}

func sliceOffset(base, sub []byte) int {
	for i := 0; i+len(sub) <= len(base); i++ {
		if len(sub) > 0 && &base[i] == &sub[0] {
			return i
		}
	}
	return -1
}

func TestHeaderLayout(t *testing.T) {
	f := &File{KV: []KV{{"general.architecture", "controlvector"}}, Tensors: []Tensor{NewF32Tensor("direction.1", []float32{1})}}
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(data[:4]) != "GGUF" || binary.LittleEndian.Uint32(data[4:]) != 3 ||
		binary.LittleEndian.Uint64(data[8:]) != 1 || binary.LittleEndian.Uint64(data[16:]) != 1 {
		t.Fatalf("bad header % x", data[:24])
	}
	if len(data)%32 != 0 {
		t.Fatalf("file length %d not padded to 32", len(data))
	}
}

func TestParseErrors(t *testing.T) {
	good, err := sampleFile().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Every strict prefix that cuts into the header or a tensor must fail cleanly.
	lastTensorEnd := len(good) - 28 // "one" is 4 bytes padded to 32
	for n := 0; n < lastTensorEnd; n++ {
		if _, err := Parse(good[:n]); err == nil {
			t.Fatalf("prefix of %d/%d bytes parsed without error", n, len(good))
		}
	}
	if _, err := Parse(good[:24]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("want ErrTruncated, got %v", err)
	}
	bad := append([]byte(nil), good...)
	copy(bad, "GGML")
	if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "not a GGUF") {
		t.Fatalf("bad magic: %v", err)
	}
	bad = append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bad[4:], 1)
	if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "unsupported GGUF version 1") {
		t.Fatalf("bad version: %v", err)
	}
	bad = append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(bad[16:], 1<<40)
	if _, err := Parse(bad); !errors.Is(err, ErrTruncated) {
		t.Fatalf("huge kv count: %v", err)
	}
}

func TestMarshalErrors(t *testing.T) {
	cases := map[string]*File{
		"duplicate metadata key": {KV: []KV{{"a", uint8(1)}, {"a", uint8(2)}}},
		"unsupported metadata":   {KV: []KV{{"a", 3}}},
		"not a power of two":     {KV: []KV{{KeyAlignment, uint32(24)}}},
		"want uint32":            {KV: []KV{{KeyAlignment, int32(32)}}},
		"duplicate tensor name":  {Tensors: []Tensor{NewF32Tensor("x", []float32{1}), NewF32Tensor("x", []float32{2})}},
		"data bytes":             {Tensors: []Tensor{{Name: "x", Dims: []uint64{3}, Type: TensorF32, Data: make([]byte, 8)}}},
		"must be 1..63 bytes":    {Tensors: []Tensor{NewF32Tensor(strings.Repeat("n", 64), []float32{1})}},
		"not an array":           {KV: []KV{{"a", []any{uint8(1)}}}},
	}
	for want, f := range cases {
		if _, err := f.Marshal(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestAccessorsAndFiles(t *testing.T) {
	f := sampleFile()
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	g, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := g.String("s"); err != nil || s != "héllo" {
		t.Fatalf("String = %q, %v", s, err)
	}
	if _, err := g.String("u8"); err == nil || !strings.Contains(err.Error(), "has type uint8") {
		t.Fatalf("String(u8): %v", err)
	}
	if n, err := g.Int("i32"); err != nil || n != -2000000000 {
		t.Fatalf("Int = %d, %v", n, err)
	}
	if _, err := g.Int("missing"); err == nil {
		t.Fatal("Int(missing) succeeded")
	}
	if g.Tensor("nope") != nil {
		t.Fatal("found a tensor that does not exist")
	}
	if _, err := (&Tensor{Name: "q", Type: TensorQ8_0, Dims: []uint64{32}, Data: make([]byte, 34)}).Float32s(); err == nil {
		t.Fatal("Float32s on Q8_0 succeeded")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Fatal("ReadFile of a missing file succeeded")
	}
}

func TestQuantizedTensorSize(t *testing.T) {
	f := &File{Tensors: []Tensor{{Name: "w", Dims: []uint64{64, 2}, Type: TensorQ4_0, Data: make([]byte, 4*18)}}}
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Tensors[0].Data) != 72 {
		t.Fatalf("Q4_0 data is %d bytes, want 72", len(g.Tensors[0].Data))
	}
}
