package acts

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/matsteer/matsteer/internal/safefile"
)

// File is an open activation file. Meta and Rows are loaded and validated by
// Open; activation rows are read on demand. A File is safe for concurrent
// reads.
type File struct {
	Meta Meta
	Rows []Row

	path   string
	r      io.ReaderAt
	closer io.Closer
	actOff int64 // absolute offset of the activations tensor
}

// Open opens and validates the activation file at path. Errors name the
// path and say what is wrong (truncated file, corrupt header, wrong dtype or
// shape, missing metadata, out-of-range per-row values). A file with zero
// rows is valid; callers decide whether that is acceptable.
//
// Only regular files are opened (a FIFO or device is refused without
// blocking). There is no size limit: activation rows are streamed, and the
// header (at most 100 MB, the safetensors limit) and the per-row arrays
// (17 bytes a row) are read only after their sizes are checked against the
// file size.
func Open(path string) (*File, error) {
	f, st, err := safefile.Open(path, safefile.Unlimited)
	if err != nil {
		return nil, fmt.Errorf("acts: %w", err)
	}
	af, err := openReader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	af.closer = f
	return af, nil
}

// OpenReader reads an activation file of the given size from r; name is used
// in error messages. Close does not close r.
func OpenReader(r io.ReaderAt, size int64, name string) (*File, error) {
	return openReader(r, size, name)
}

func openReader(r io.ReaderAt, size int64, name string) (*File, error) {
	af, err := parse(r, size)
	if err != nil {
		return nil, fmt.Errorf("acts: %s: %w", name, err)
	}
	af.path = name
	return af, nil
}

// expected tensor dtypes and ranks.
var wantTensors = []struct {
	name  string
	dtype string
	rank  int
}{
	{TensorActivations, "F32", 2},
	{TensorAttribute, "I32", 1},
	{TensorLabel, "I8", 1},
	{TensorSampleID, "I64", 1},
	{TensorPosition, "I32", 1},
}

func parse(r io.ReaderAt, size int64) (*File, error) {
	h, err := readHeader(r, size)
	if err != nil {
		return nil, err
	}
	for _, w := range wantTensors {
		ti, ok := h.tensors[w.name]
		if !ok {
			return nil, fmt.Errorf("tensor %q is missing: not a matsteer activation file", w.name)
		}
		if ti.Dtype != w.dtype {
			return nil, fmt.Errorf("tensor %q has dtype %s, want %s", w.name, ti.Dtype, w.dtype)
		}
		if len(ti.Shape) != w.rank {
			return nil, fmt.Errorf("tensor %q has shape %v, want rank %d", w.name, ti.Shape, w.rank)
		}
	}
	act := h.tensors[TensorActivations]
	n, d := act.Shape[0], act.Shape[1]
	if n > math.MaxInt32 {
		return nil, fmt.Errorf("tensor %q has %d rows, more than this reader supports", TensorActivations, n)
	}
	for _, w := range wantTensors[1:] {
		if s := h.tensors[w.name].Shape[0]; s != n {
			return nil, fmt.Errorf("tensor %q has %d entries but %q has %d rows", w.name, s, TensorActivations, n)
		}
	}
	if h.metadata == nil {
		return nil, fmt.Errorf("no __metadata__: not a matsteer activation file")
	}
	meta, err := metaFromMetadata(h.metadata, d)
	if err != nil {
		return nil, err
	}
	af := &File{Meta: meta, r: r, actOff: h.dataStart() + act.DataOffsets[0]}

	read := func(name string) ([]byte, error) {
		ti := h.tensors[name]
		b := make([]byte, ti.DataOffsets[1]-ti.DataOffsets[0])
		if len(b) == 0 { // some ReaderAts report EOF even for empty reads at the end
			return b, nil
		}
		if _, err := r.ReadAt(b, h.dataStart()+ti.DataOffsets[0]); err != nil {
			return nil, fmt.Errorf("reading tensor %q: %w", name, err)
		}
		return b, nil
	}
	attr, err := read(TensorAttribute)
	if err != nil {
		return nil, err
	}
	label, err := read(TensorLabel)
	if err != nil {
		return nil, err
	}
	sid, err := read(TensorSampleID)
	if err != nil {
		return nil, err
	}
	pos, err := read(TensorPosition)
	if err != nil {
		return nil, err
	}
	af.Rows = make([]Row, n)
	na := len(meta.Attributes)
	for i := range af.Rows {
		row := Row{
			Attribute: int32(binary.LittleEndian.Uint32(attr[4*i:])),
			Label:     int8(label[i]),
			SampleID:  int64(binary.LittleEndian.Uint64(sid[8*i:])),
			Position:  int32(binary.LittleEndian.Uint32(pos[4*i:])),
		}
		if row.Attribute < 0 || int(row.Attribute) >= na {
			return nil, fmt.Errorf("row %d: attribute index %d out of range (the file names %d attributes)", i, row.Attribute, na)
		}
		if row.Label != 0 && row.Label != 1 {
			return nil, fmt.Errorf("row %d: label %d is not 0 or 1", i, row.Label)
		}
		if row.Position < 0 {
			return nil, fmt.Errorf("row %d: negative position %d", i, row.Position)
		}
		af.Rows[i] = row
	}
	return af, nil
}

// Path returns the path (or name) the file was opened with.
func (f *File) Path() string { return f.path }

// Len returns the number of rows.
func (f *File) Len() int { return len(f.Rows) }

// Vector reads row i into dst, which must have length Meta.NEmbd.
func (f *File) Vector(i int, dst []float32) error {
	if i < 0 || i >= len(f.Rows) {
		return fmt.Errorf("acts: %s: row %d out of range [0, %d)", f.path, i, len(f.Rows))
	}
	if len(dst) != f.Meta.NEmbd {
		return fmt.Errorf("acts: %s: destination has length %d, want n_embd %d", f.path, len(dst), f.Meta.NEmbd)
	}
	return f.VectorsRange(i, dst)
}

// VectorsRange reads len(dst)/NEmbd consecutive rows starting at row start
// into dst (row-major). len(dst) must be a multiple of NEmbd. It reads in
// bounded chunks, so it suits streaming over files larger than memory.
func (f *File) VectorsRange(start int, dst []float32) error {
	d := f.Meta.NEmbd
	if len(dst)%d != 0 {
		return fmt.Errorf("acts: %s: destination length %d is not a multiple of n_embd %d", f.path, len(dst), d)
	}
	count := len(dst) / d
	if start < 0 || count > len(f.Rows) || start > len(f.Rows)-count {
		return fmt.Errorf("acts: %s: rows [%d, %d) out of range [0, %d)", f.path, start, start+count, len(f.Rows))
	}
	const chunk = 1 << 16 // values per read
	buf := make([]byte, 4*min(len(dst), chunk))
	off := f.actOff + 4*int64(start)*int64(d)
	for done := 0; done < len(dst); {
		k := min(len(dst)-done, chunk)
		b := buf[:4*k]
		if _, err := f.r.ReadAt(b, off+4*int64(done)); err != nil {
			return fmt.Errorf("acts: %s: reading activations: %w", f.path, err)
		}
		for j := range k {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				idx := done + j
				return fmt.Errorf("acts: %s: row %d, column %d: value %v is not finite (corrupt file)", f.path, start+idx/d, idx%d, v)
			}
			dst[done+j] = v
		}
		done += k
	}
	return nil
}

// Vectors reads every row, N*NEmbd values row-major.
func (f *File) Vectors() ([]float32, error) {
	out := make([]float32, len(f.Rows)*f.Meta.NEmbd)
	if len(out) == 0 {
		return out, nil
	}
	if err := f.VectorsRange(0, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Close releases the file. It does nothing for a File from OpenReader.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	if err != nil {
		return fmt.Errorf("acts: %s: %w", f.path, err)
	}
	return nil
}
