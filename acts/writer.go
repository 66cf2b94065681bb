package acts

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/matsteer/matsteer/internal/safefile"
)

// Writer streams rows into a new activation file. It is not safe for
// concurrent use. Every Writer must end with Close or Abort; the usual
// pattern is
//
//	w, err := acts.Create(path, meta)
//	if err != nil { ... }
//	defer w.Abort() // no-op after a successful Close
//	... w.Append(vecs, rows) ...
//	return w.Close()
type Writer struct {
	path    string
	meta    Meta
	md      map[string]string
	hdrSize int // reserved header length (bytes after the 8-byte prefix)

	f   *os.File
	tmp string
	bw  *bufio.Writer
	buf []byte

	attr  []int32
	label []int8
	sid   []int64
	pos   []int32

	err   error // sticky I/O error
	state int
}

const (
	stateOpen = iota
	stateClosed
	stateAborted
)

// Create starts a new activation file at path. Rows are streamed into a
// temporary file next to path; nothing appears at path until Close succeeds.
func Create(path string, meta Meta) (*Writer, error) {
	if err := meta.Validate(); err != nil {
		return nil, fmt.Errorf("acts: create %s: %w", path, err)
	}
	meta.Attributes = slices.Clone(meta.Attributes) // the caller may reuse its own
	meta.Extra = maps.Clone(meta.Extra)
	md := meta.metadata()
	// Reserve room for the largest header this metadata can need: the same
	// header with every number at its maximum width.
	const big = math.MaxInt64
	maxTensors := layoutTensors(0, int64(meta.NEmbd))
	for k, ti := range maxTensors {
		for i := range ti.Shape {
			ti.Shape[i] = big
		}
		ti.DataOffsets = []int64{big, big}
		maxTensors[k] = ti
	}
	hdr, err := encodeHeader(maxTensors, md, 0)
	if err != nil {
		return nil, fmt.Errorf("acts: create %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("acts: create %s: %w", path, err)
	}
	w := &Writer{
		path:    path,
		meta:    meta,
		md:      md,
		hdrSize: len(hdr),
		f:       f,
		tmp:     f.Name(),
		bw:      bufio.NewWriterSize(f, 1<<20),
	}
	// Placeholder for the length prefix and header, filled in by Close.
	if _, err := w.bw.Write(make([]byte, 8+w.hdrSize)); err != nil {
		w.Abort()
		return nil, fmt.Errorf("acts: create %s: %w", path, err)
	}
	return w, nil
}

// Path returns the destination path.
func (w *Writer) Path() string { return w.path }

// Meta returns the metadata the writer was created with.
func (w *Writer) Meta() Meta { return w.meta }

// Len returns the number of rows appended so far.
func (w *Writer) Len() int { return len(w.attr) }

// Append adds len(rows) activation rows; vecs holds them row-major, so
// len(vecs) must be len(rows)*NEmbd. Invalid input (a non-finite value, an
// unknown attribute index, a label other than 0 or 1, a negative position)
// is rejected before anything is written, and the writer stays usable. An
// I/O error is sticky: Close then fails and removes the temporary file.
func (w *Writer) Append(vecs []float32, rows []Row) error {
	if w.state != stateOpen {
		return fmt.Errorf("acts: append to %s: writer is closed", w.path)
	}
	if w.err != nil {
		return w.err
	}
	d := w.meta.NEmbd
	if len(vecs) != len(rows)*d {
		return fmt.Errorf("acts: append to %s: %d values for %d rows of width %d (want %d)", w.path, len(vecs), len(rows), d, len(rows)*d)
	}
	if len(w.attr)+len(rows) > math.MaxInt32 {
		return fmt.Errorf("acts: append to %s: too many rows", w.path)
	}
	for i, r := range rows {
		if r.Attribute < 0 || int(r.Attribute) >= len(w.meta.Attributes) {
			return fmt.Errorf("acts: append to %s: row %d (sample %d): attribute index %d out of range [0, %d)", w.path, i, r.SampleID, r.Attribute, len(w.meta.Attributes))
		}
		if r.Label != 0 && r.Label != 1 {
			return fmt.Errorf("acts: append to %s: row %d (sample %d): label %d is not 0 or 1", w.path, i, r.SampleID, r.Label)
		}
		if r.Position < 0 {
			return fmt.Errorf("acts: append to %s: row %d (sample %d): negative position %d", w.path, i, r.SampleID, r.Position)
		}
		for j, v := range vecs[i*d : (i+1)*d] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("acts: append to %s: row %d (sample %d, position %d), column %d: value %v is not finite", w.path, i, r.SampleID, r.Position, j, v)
			}
		}
	}
	if cap(w.buf) < 4*d {
		w.buf = make([]byte, 4*d)
	}
	b := w.buf[:4*d]
	for i := range rows {
		for j, v := range vecs[i*d : (i+1)*d] {
			binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(v))
		}
		if _, err := w.bw.Write(b); err != nil {
			w.err = fmt.Errorf("acts: write %s: %w", w.tmp, err)
			return w.err
		}
	}
	for _, r := range rows {
		w.attr = append(w.attr, r.Attribute)
		w.label = append(w.label, r.Label)
		w.sid = append(w.sid, r.SampleID)
		w.pos = append(w.pos, r.Position)
	}
	return nil
}

// layoutTensors returns the tensor entries for n rows of width d in the
// order they are stored: activations first (so rows can be streamed), then
// the small tensors ordered so that each is aligned to its element size.
func layoutTensors(n, d int64) map[string]tensorInfo {
	type ent struct {
		name  string
		dtype string
		size  int64
	}
	actBytes := 4 * n * d
	order := []ent{{TensorSampleID, "I64", 8}, {TensorAttribute, "I32", 4}, {TensorPosition, "I32", 4}, {TensorLabel, "I8", 1}}
	if actBytes%8 != 0 {
		// n and d are odd: one I32 tensor (4n bytes, 4 mod 8) restores
		// 8-byte alignment for sample_id.
		order = []ent{{TensorAttribute, "I32", 4}, {TensorSampleID, "I64", 8}, {TensorPosition, "I32", 4}, {TensorLabel, "I8", 1}}
	}
	out := map[string]tensorInfo{
		TensorActivations: {Dtype: "F32", Shape: []int64{n, d}, DataOffsets: []int64{0, actBytes}},
	}
	off := actBytes
	for _, e := range order {
		out[e.name] = tensorInfo{Dtype: e.dtype, Shape: []int64{n}, DataOffsets: []int64{off, off + e.size*n}}
		off += e.size * n
	}
	return out
}

// Close writes the per-row tensors and the header, syncs the file and
// renames it to the destination path. On failure the temporary file is
// removed and nothing is left at the destination.
func (w *Writer) Close() error {
	switch w.state {
	case stateClosed:
		return fmt.Errorf("acts: close %s: already closed", w.path)
	case stateAborted:
		return fmt.Errorf("acts: close %s: writer was aborted", w.path)
	}
	if err := w.finish(); err != nil {
		w.Abort()
		return err
	}
	w.state = stateClosed
	return nil
}

func (w *Writer) finish() error {
	if w.err != nil {
		return w.err
	}
	wrap := func(err error) error { return fmt.Errorf("acts: close %s: %w", w.path, err) }
	n, d := int64(len(w.attr)), int64(w.meta.NEmbd)
	tensors := layoutTensors(n, d)
	// Small tensors in layout order.
	type part struct {
		off int64
		put func() error
	}
	parts := []part{
		{tensors[TensorSampleID].DataOffsets[0], func() error {
			var b [8]byte
			for _, v := range w.sid {
				binary.LittleEndian.PutUint64(b[:], uint64(v))
				if _, err := w.bw.Write(b[:]); err != nil {
					return err
				}
			}
			return nil
		}},
		{tensors[TensorAttribute].DataOffsets[0], func() error { return writeI32(w.bw, w.attr) }},
		{tensors[TensorPosition].DataOffsets[0], func() error { return writeI32(w.bw, w.pos) }},
		{tensors[TensorLabel].DataOffsets[0], func() error {
			for _, v := range w.label {
				if err := w.bw.WriteByte(byte(v)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for i := 1; i < len(parts); i++ { // insertion sort by offset (4 entries)
		for j := i; j > 0 && parts[j].off < parts[j-1].off; j-- {
			parts[j], parts[j-1] = parts[j-1], parts[j]
		}
	}
	for _, p := range parts {
		if err := p.put(); err != nil {
			return wrap(err)
		}
	}
	if err := w.bw.Flush(); err != nil {
		return wrap(err)
	}
	hdr, err := encodeHeader(tensors, w.md, w.hdrSize)
	if err != nil {
		return wrap(err)
	}
	pre := make([]byte, 8, 8+len(hdr))
	binary.LittleEndian.PutUint64(pre, uint64(len(hdr)))
	if _, err := w.f.WriteAt(append(pre, hdr...), 0); err != nil {
		return wrap(err)
	}
	if err := w.f.Chmod(0o644); err != nil {
		return wrap(err)
	}
	if err := w.f.Sync(); err != nil {
		return wrap(err)
	}
	err = w.f.Close()
	w.f = nil
	if err != nil {
		return wrap(err)
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		return wrap(err)
	}
	safefile.SyncDir(filepath.Dir(w.path))
	return nil
}

func writeI32(bw *bufio.Writer, vs []int32) error {
	var b [4]byte
	for _, v := range vs {
		binary.LittleEndian.PutUint32(b[:], uint32(v))
		if _, err := bw.Write(b[:]); err != nil {
			return err
		}
	}
	return nil
}

// Abort discards the file being written and removes its temporary file. It
// is safe to call more than once and after Close (then it does nothing).
func (w *Writer) Abort() {
	if w.state != stateOpen {
		return
	}
	w.state = stateAborted
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
	_ = os.Remove(w.tmp) // best effort; the temporary file has a dot name
	w.attr, w.label, w.sid, w.pos = nil, nil, nil, nil
}
