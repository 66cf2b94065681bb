package acts

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testMeta(d int) Meta {
	return Meta{
		ModelArch:  "llama",
		ModelName:  "tiny <test> & model",
		NEmbd:      d,
		Layer:      7,
		Site:       "l_out",
		TokenMode:  TokenAll,
		Attributes: []string{"truthfulness", "toxicity", "bias"},
		Source:     "a.jsonl,b.jsonl",
		Extra:      map[string]string{"model_sha256": "b179c952", "note": "ünïcode \"quoted\""},
	}
}

// testRows returns n deterministic rows of width d.
func testRows(n, d int) ([]float32, []Row) {
	vecs := make([]float32, n*d)
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Attribute: int32(i % 3), Label: int8(i % 2), SampleID: int64(i)*1_000_000_007 - 5, Position: int32(i * 3)}
		for j := range d {
			vecs[i*d+j] = float32(i) - float32(j)/7 + 0.25
		}
	}
	if n > 0 {
		vecs[0] = math.MaxFloat32
		vecs[len(vecs)-1] = -math.SmallestNonzeroFloat32
	}
	return vecs, rows
}

// writeFile writes rows in chunks of chunk rows and returns the path.
func writeFile(t testing.TB, dir string, meta Meta, vecs []float32, rows []Row, chunk int) string {
	t.Helper()
	path := filepath.Join(dir, "acts.safetensors")
	w, err := Create(path, meta)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	d := meta.NEmbd
	for i := 0; i < len(rows); i += chunk {
		j := min(i+chunk, len(rows))
		if err := w.Append(vecs[i*d:j*d], rows[i:j]); err != nil {
			t.Fatal(err)
		}
	}
	if w.Len() != len(rows) {
		t.Fatalf("Len = %d, want %d", w.Len(), len(rows))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct{ n, d int }{{0, 4}, {1, 1}, {5, 3}, {7, 5}, {64, 16}, {3, 1000}} {
		dir := t.TempDir()
		meta := testMeta(c.d)
		vecs, rows := testRows(c.n, c.d)
		path := writeFile(t, dir, meta, vecs, rows, 2)
		if got := dirNames(t, dir); !reflect.DeepEqual(got, []string{"acts.safetensors"}) {
			t.Fatalf("directory holds %v, want only the final file", got)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatalf("n=%d d=%d: %v", c.n, c.d, err)
		}
		if !reflect.DeepEqual(f.Meta, meta) {
			t.Errorf("meta = %+v, want %+v", f.Meta, meta)
		}
		if c.n == 0 {
			if len(f.Rows) != 0 {
				t.Errorf("rows = %v, want none", f.Rows)
			}
		} else if !reflect.DeepEqual(f.Rows, rows) {
			t.Errorf("rows = %v, want %v", f.Rows, rows)
		}
		got, err := f.Vectors()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(vecs) {
			t.Fatalf("Vectors: %d values, want %d", len(got), len(vecs))
		}
		for i := range got {
			if got[i] != vecs[i] {
				t.Fatalf("value %d = %v, want %v", i, got[i], vecs[i])
			}
		}
		dst := make([]float32, c.d)
		for i := range c.n {
			if err := f.Vector(i, dst); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dst, vecs[i*c.d:(i+1)*c.d]) {
				t.Fatalf("Vector(%d) = %v", i, dst)
			}
		}
		if err := f.Vector(c.n, dst); err == nil {
			t.Error("Vector past the end: no error")
		}
		if c.n > 0 {
			if err := f.Vector(0, dst[:c.d-1]); c.d > 1 && err == nil {
				t.Error("Vector with a short destination: no error")
			}
		}
		checkLayout(t, path)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLayout checks the safetensors details other readers rely on: the
// data buffer starts 8-aligned and every tensor is aligned to its element
// size.
func checkLayout(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	if (8+n)%8 != 0 {
		t.Errorf("data starts at %d, not 8-aligned", 8+n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatalf("header is not JSON: %v", err)
	}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var ti tensorInfo
		if err := json.Unmarshal(raw, &ti); err != nil {
			t.Fatal(err)
		}
		if ti.DataOffsets[0]%dtypeSize[ti.Dtype] != 0 {
			t.Errorf("tensor %s (%s) at offset %d is misaligned", name, ti.Dtype, ti.DataOffsets[0])
		}
	}
}

func TestAppendRejects(t *testing.T) {
	dir := t.TempDir()
	meta := testMeta(2)
	w, err := Create(filepath.Join(dir, "x.safetensors"), meta)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	good := Row{Attribute: 1, Label: 1}
	cases := []struct {
		vecs []float32
		rows []Row
		want string
	}{
		{[]float32{1, float32(math.NaN())}, []Row{good}, "column 1: value NaN is not finite"},
		{[]float32{float32(math.Inf(-1)), 1}, []Row{good}, "not finite"},
		{[]float32{1, 2, 3}, []Row{good}, "3 values for 1 rows"},
		{[]float32{1, 2}, []Row{{Attribute: 3}}, "attribute index 3 out of range"},
		{[]float32{1, 2}, []Row{{Attribute: -1}}, "attribute index -1"},
		{[]float32{1, 2}, []Row{{Label: 2}}, "label 2"},
		{[]float32{1, 2}, []Row{{Position: -4}}, "negative position"},
	}
	for _, c := range cases {
		err := w.Append(c.vecs, c.rows)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.safetensors") {
			t.Errorf("Append(%v, %v) = %v, want error containing %q and the path", c.vecs, c.rows, err, c.want)
		}
	}
	// A rejected Append writes nothing: the writer is still usable.
	if err := w.Append([]float32{1, 2}, []Row{good}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(filepath.Join(dir, "x.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(f.Rows))
	}
}

func TestCreateRejectsBadMeta(t *testing.T) {
	dir := t.TempDir()
	bad := []func(*Meta){
		func(m *Meta) { m.NEmbd = 0 },
		func(m *Meta) { m.Layer = -1 },
		func(m *Meta) { m.TokenMode = "some" },
		func(m *Meta) { m.Attributes = nil },
		func(m *Meta) { m.Attributes = []string{"a", "a"} },
		func(m *Meta) { m.Attributes = []string{"a", " "} },
		func(m *Meta) { m.Extra = map[string]string{"": "x"} },
	}
	for i, f := range bad {
		m := testMeta(3)
		f(&m)
		if w, err := Create(filepath.Join(dir, "x"), m); err == nil {
			w.Abort()
			t.Errorf("case %d: Create accepted %+v", i, m)
		}
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("rejected Create left %v", got)
	}
	if _, err := Create(filepath.Join(dir, "missing", "x"), testMeta(3)); err == nil {
		t.Error("Create in a missing directory: no error")
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	w, err := Create(path, testMeta(4))
	if err != nil {
		t.Fatal(err)
	}
	vecs, rows := testRows(10, 4)
	if err := w.Append(vecs, rows); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); len(got) != 1 || !strings.HasPrefix(got[0], ".x.safetensors.") {
		t.Fatalf("while writing, directory holds %v, want one temporary file", got)
	}
	w.Abort()
	w.Abort()
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("after Abort, directory holds %v", got)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort: no error")
	}
	if err := w.Append(vecs, rows); err == nil {
		t.Error("Append after Abort: no error")
	}

	// Abort after Close is a no-op and keeps the file.
	path = writeFile(t, dir, testMeta(4), vecs, rows, 3)
	if _, err := Open(path); err != nil {
		t.Fatal(err)
	}
}

func TestAbortAfterCloseKeepsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	w, err := Create(path, testMeta(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]float32{1, 2}, []Row{{}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if err := w.Close(); err == nil {
		t.Error("second Close: no error")
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("file gone after Abort following Close: %v", err)
	}
	f.Close()
}

func TestTruncated(t *testing.T) {
	vecs, rows := testRows(5, 3)
	path := writeFile(t, t.TempDir(), testMeta(3), vecs, rows, 5)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReader(bytes.NewReader(data), int64(len(data)), "whole"); err != nil {
		t.Fatal(err)
	}
	for _, empty := range []int{0, 1} { // zero rows: empty tensors end the file
		m := testMeta(2)
		dst := writeFile(t, t.TempDir(), m, make([]float32, 2*empty), make([]Row, empty), 1)
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenReader(bytes.NewReader(b), int64(len(b)), "empty"); err != nil {
			t.Fatalf("%d rows through a bytes.Reader: %v", empty, err)
		}
	}
	for n := range len(data) {
		_, err := OpenReader(bytes.NewReader(data[:n]), int64(n), "cut.safetensors")
		if err == nil {
			t.Fatalf("prefix of %d/%d bytes opened without error", n, len(data))
		}
		if !strings.Contains(err.Error(), "cut.safetensors") {
			t.Fatalf("error does not name the file: %v", err)
		}
	}
	// Through the file system too, for a few lengths, with the path named.
	cut := filepath.Join(t.TempDir(), "cut.safetensors")
	for _, n := range []int{0, 7, 8, 100, len(data) - 1} {
		if err := os.WriteFile(cut, data[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(cut)
		if err == nil || !strings.Contains(err.Error(), cut) || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("Open(%d-byte prefix) = %v, want a truncation error naming %s", n, err, cut)
		}
	}
	// Trailing garbage is rejected as well.
	if _, err := OpenReader(bytes.NewReader(append(data, 0)), int64(len(data)+1), "long"); err == nil {
		t.Error("file with a trailing byte opened without error")
	}
}

// rewriteHeader returns data with its header replaced by edit(header JSON).
func rewriteHeader(t *testing.T, data []byte, edit func(map[string]any)) []byte {
	t.Helper()
	n := binary.LittleEndian.Uint64(data)
	var hdr map[string]any
	dec := json.NewDecoder(bytes.NewReader(data[8 : 8+n]))
	dec.UseNumber()
	if err := dec.Decode(&hdr); err != nil {
		t.Fatal(err)
	}
	edit(hdr)
	b, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(b)))
	out = append(out, b...)
	return append(out, data[8+n:]...)
}

func TestCorrupt(t *testing.T) {
	vecs, rows := testRows(4, 2)
	path := writeFile(t, t.TempDir(), testMeta(2), vecs, rows, 4)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	md := func(k, v string) func(map[string]any) {
		return func(h map[string]any) { h["__metadata__"].(map[string]any)[k] = v }
	}
	tensor := func(name, field string, v any) func(map[string]any) {
		return func(h map[string]any) { h[name].(map[string]any)[field] = v }
	}
	headerCases := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"unchanged", func(map[string]any) {}, ""},
		{"dtype", tensor("label", "dtype", "U8"), `tensor "label" has dtype U8`},
		{"unknown dtype", tensor("label", "dtype", "Q4"), `unknown dtype "Q4"`},
		{"shape", tensor("activations", "shape", []int{2, 4}), "activations"},
		{"rank", tensor("label", "shape", []int{4, 1}), "want rank 1"},
		{"offsets", tensor("label", "data_offsets", []int{0, 4}), "gap or overlap"},
		{"offsets past end", tensor("label", "data_offsets", []int{1000, 1004}), "truncated"},
		{"removed tensor", func(h map[string]any) { delete(h, "position") }, "gap or overlap"},
		{"missing tensor", func(h map[string]any) { h["pos"] = h["position"]; delete(h, "position") }, `tensor "position" is missing`},
		{"version", md(KeyFormatVersion, "2"), "unsupported format version"},
		{"no version", func(h map[string]any) { delete(h["__metadata__"].(map[string]any), KeyFormatVersion) }, "missing"},
		{"n_embd", md(KeyNEmbd, "3"), "n_embd = 3"},
		{"n_embd text", md(KeyNEmbd, "two"), "not an integer"},
		{"attributes", md(KeyAttributes, "truthfulness"), "JSON array"},
		{"few attributes", md(KeyAttributes, `["a"]`), "out of range"},
		{"no metadata", func(h map[string]any) { delete(h, "__metadata__") }, "no __metadata__"},
		{"metadata not strings", func(h map[string]any) { h["__metadata__"] = map[string]any{"a": 1} }, "map of strings"},
	}
	for _, c := range headerCases {
		b := rewriteHeader(t, data, c.edit)
		_, err := OpenReader(bytes.NewReader(b), int64(len(b)), "c.safetensors")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}

	n := binary.LittleEndian.Uint64(data)
	byteCases := []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"huge length", func(b []byte) []byte { binary.LittleEndian.PutUint64(b, 1<<40); return b }, "exceeds"},
		{"not json", func(b []byte) []byte { b[8] = '['; return b }, "does not start with '{'"},
		{"bad json", func(b []byte) []byte { b[9] = '{'; return b }, "header"},
		{"invalid utf8", func(b []byte) []byte { b[8+n-1] = 0xff; return b }, "UTF-8"},
		{"trailing data in header", func(b []byte) []byte { b[8+n-1] = 'x'; return b }, "trailing data"},
		{"label value", func(b []byte) []byte { b[len(b)-1] = 7; return b }, "label 7"},
		{"nan activation", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[8+n+4:], math.Float32bits(float32(math.NaN())))
			return b
		}, "not finite"},
	}
	for _, c := range byteCases {
		b := c.edit(bytes.Clone(data))
		f, err := OpenReader(bytes.NewReader(b), int64(len(b)), "c.safetensors")
		if err == nil {
			_, err = f.Vectors()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}

	dup := append(binary.LittleEndian.AppendUint64(nil, 0), []byte(`{"a":{"dtype":"I8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"I8","shape":[0],"data_offsets":[0,0]}}`)...)
	binary.LittleEndian.PutUint64(dup, uint64(len(dup)-8))
	if _, err := OpenReader(bytes.NewReader(dup), int64(len(dup)), "dup"); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("duplicate key: %v", err)
	}
}

// TestForeignSafetensors checks the reader against a file laid out the way
// other writers do it: unpadded header, different tensor order, extra tensor
// and metadata keys.
func TestForeignSafetensors(t *testing.T) {
	var buf []byte
	tensors := map[string]tensorInfo{}
	add := func(name, dtype string, shape []int64, data []byte) {
		tensors[name] = tensorInfo{Dtype: dtype, Shape: shape, DataOffsets: []int64{int64(len(buf)), int64(len(buf) + len(data))}}
		buf = append(buf, data...)
	}
	add("label", "I8", []int64{2}, []byte{1, 0})
	add("attribute", "I32", []int64{2}, []byte{0, 0, 0, 0, 1, 0, 0, 0})
	add("position", "I32", []int64{2}, []byte{3, 0, 0, 0, 4, 0, 0, 0})
	add("sample_id", "I64", []int64{2}, []byte{9, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255})
	act := []byte{}
	for _, v := range []float32{1, 2, 3, -4} {
		act = binary.LittleEndian.AppendUint32(act, math.Float32bits(v))
	}
	add("activations", "F32", []int64{2, 2}, act)
	add("extra_tensor", "U8", []int64{0}, nil)
	md := map[string]string{KeyFormatVersion: "1", KeyNEmbd: "2", KeyLayer: "0", KeyAttributes: `["a","b"]`, "other.tool": "x"}
	hdr, err := json.Marshal(map[string]any{"__metadata__": md, "label": tensors["label"], "attribute": tensors["attribute"],
		"position": tensors["position"], "sample_id": tensors["sample_id"], "activations": tensors["activations"], "extra_tensor": tensors["extra_tensor"]})
	if err != nil {
		t.Fatal(err)
	}
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	file = append(append(file, hdr...), buf...)
	f, err := OpenReader(bytes.NewReader(file), int64(len(file)), "foreign")
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{{0, 1, 9, 3}, {1, 0, -1, 4}}
	if !reflect.DeepEqual(f.Rows, want) {
		t.Errorf("rows = %v, want %v", f.Rows, want)
	}
	v, err := f.Vectors()
	if err != nil || !reflect.DeepEqual(v, []float32{1, 2, 3, -4}) {
		t.Errorf("Vectors = %v, %v", v, err)
	}
}

// TestPythonSafetensors reads a file with the Python safetensors package,
// when it is installed (set MATSTEER_PYTHON to choose the interpreter).
func TestPythonSafetensors(t *testing.T) {
	py := os.Getenv("MATSTEER_PYTHON")
	if py == "" {
		py = "python3"
	}
	if err := exec.Command(py, "-c", "import safetensors, numpy").Run(); err != nil {
		t.Skipf("skipping: %s cannot import safetensors and numpy (set MATSTEER_PYTHON to an interpreter that can): %v", py, err)
	}
	for _, c := range []struct{ n, d int }{{6, 4}, {5, 3}, {0, 2}} {
		vecs, rows := testRows(c.n, c.d)
		meta := testMeta(c.d)
		path := writeFile(t, t.TempDir(), meta, vecs, rows, 4)
		script := `
import json, sys
from safetensors.numpy import load_file
from safetensors import safe_open
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], framework="numpy") as f:
    md = f.metadata()
out = {k: v.tolist() for k, v in t.items()}
out["dtypes"] = {k: str(v.dtype) for k, v in t.items()}
out["shapes"] = {k: list(v.shape) for k, v in t.items()}
out["metadata"] = md
json.dump(out, sys.stdout)
`
		outb, err := exec.Command(py, "-c", script, path).Output()
		if err != nil {
			t.Fatalf("python: %v", err)
		}
		var got struct {
			Activations [][]float64       `json:"activations"`
			Attribute   []int32           `json:"attribute"`
			Label       []int8            `json:"label"`
			SampleID    []int64           `json:"sample_id"`
			Position    []int32           `json:"position"`
			Dtypes      map[string]string `json:"dtypes"`
			Shapes      map[string][]int  `json:"shapes"`
			Metadata    map[string]string `json:"metadata"`
		}
		if err := json.Unmarshal(outb, &got); err != nil {
			t.Fatal(err)
		}
		wantDtypes := map[string]string{"activations": "float32", "attribute": "int32", "label": "int8", "sample_id": "int64", "position": "int32"}
		if !reflect.DeepEqual(got.Dtypes, wantDtypes) {
			t.Errorf("dtypes = %v, want %v", got.Dtypes, wantDtypes)
		}
		if s := got.Shapes["activations"]; len(s) != 2 || s[0] != c.n || s[1] != c.d {
			t.Errorf("activations shape = %v", s)
		}
		for i, r := range rows {
			if got.Attribute[i] != r.Attribute || got.Label[i] != r.Label || got.SampleID[i] != r.SampleID || got.Position[i] != r.Position {
				t.Errorf("row %d: python read %d/%d/%d/%d, want %+v", i, got.Attribute[i], got.Label[i], got.SampleID[i], got.Position[i], r)
			}
			for j := range c.d {
				if float32(got.Activations[i][j]) != vecs[i*c.d+j] {
					t.Errorf("activation [%d,%d] = %v, want %v", i, j, got.Activations[i][j], vecs[i*c.d+j])
				}
			}
		}
		if !reflect.DeepEqual(got.Metadata, meta.metadata()) {
			t.Errorf("metadata = %v, want %v", got.Metadata, meta.metadata())
		}
	}
}

func FuzzOpen(f *testing.F) {
	// Small seeds keep the fuzzer's input minimisation fast: a minimal
	// Meta, and besides the Writer's output (whose header is padded to the
	// reserved size) the same files with a compact header.
	small := Meta{NEmbd: 1, Attributes: []string{"a"}}
	for _, c := range []struct{ n, d int }{{0, 1}, {2, 3}, {1, 2}} {
		small.NEmbd = c.d
		vecs, rows := testRows(c.n, c.d)
		for i := range rows {
			rows[i].Attribute = 0
		}
		path := writeFile(f, f.TempDir(), small, vecs, rows, 2)
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		n := binary.LittleEndian.Uint64(data)
		hdr := bytes.TrimRight(data[8:8+n], " ")
		compact := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		compact = append(append(compact, hdr...), data[8+n:]...)
		if _, err := OpenReader(bytes.NewReader(compact), int64(len(compact)), "compact"); err != nil {
			f.Fatalf("file with an unpadded header: %v", err)
		}
		f.Add(compact)
	}
	f.Add([]byte{})
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		af, err := OpenReader(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			return
		}
		if af.Meta.NEmbd <= 0 || len(af.Meta.Attributes) == 0 {
			t.Fatalf("accepted invalid meta %+v", af.Meta)
		}
		v, err := af.Vectors()
		if err != nil {
			return
		}
		if len(v) != len(af.Rows)*af.Meta.NEmbd {
			t.Fatalf("Vectors returned %d values for %d rows of %d", len(v), len(af.Rows), af.Meta.NEmbd)
		}
		if len(af.Rows) > 0 {
			dst := make([]float32, af.Meta.NEmbd)
			if err := af.Vector(len(af.Rows)-1, dst); err != nil {
				t.Fatal(err)
			}
		}
	})
}
