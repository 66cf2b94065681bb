package acts

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"unicode/utf8"

	"github.com/matsteer/matsteer/internal/safefile"
)

// tensorInfo is one tensor entry of a safetensors header.
type tensorInfo struct {
	Dtype       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// dtypeSize is the element size in bytes of every safetensors dtype.
var dtypeSize = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// header is a parsed and validated safetensors header.
type header struct {
	size     int64 // header length N (bytes after the 8-byte prefix)
	metadata map[string]string
	tensors  map[string]tensorInfo
}

// dataStart is the absolute file offset of the byte buffer.
func (h *header) dataStart() int64 { return 8 + h.size }

// encodeHeader returns the JSON header for the given tensors and metadata,
// padded with spaces to exactly size bytes (size 0: padded to the smallest
// length that makes 8+len a multiple of 8).
func encodeHeader(tensors map[string]tensorInfo, metadata map[string]string, size int) ([]byte, error) {
	obj := make(map[string]any, len(tensors)+1)
	for k, v := range tensors {
		obj[k] = v
	}
	if metadata != nil {
		obj["__metadata__"] = metadata
	}
	b, err := json.Marshal(obj) // map keys are sorted: deterministic
	if err != nil {
		return nil, err
	}
	if size == 0 {
		size = (len(b) + 7) &^ 7
	}
	if len(b) > size {
		return nil, fmt.Errorf("header needs %d bytes, only %d reserved", len(b), size)
	}
	if size > maxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the safetensors limit of %d", size, maxHeaderSize)
	}
	return append(b, bytes.Repeat([]byte{' '}, size-len(b))...), nil
}

// mulCheck returns a*b, or false when the product overflows int64 or an
// argument is negative.
func mulCheck(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > 1<<63-1 {
		return 0, false
	}
	return int64(lo), true
}

// readHeader reads and validates the safetensors header of a file of the
// given size: it checks the length prefix, the JSON, every dtype, shape and
// data offset, and that the tensors cover the byte buffer contiguously.
func readHeader(r io.ReaderAt, size int64) (*header, error) {
	if size < 8 {
		return nil, fmt.Errorf("truncated: %d bytes, need at least 8 for the header length", size)
	}
	var pre [8]byte
	if _, err := r.ReadAt(pre[:], 0); err != nil {
		return nil, fmt.Errorf("reading header length: %w", err)
	}
	n64 := binary.LittleEndian.Uint64(pre[:])
	if n64 > maxHeaderSize {
		return nil, fmt.Errorf("header length %d exceeds the safetensors limit of %d: corrupt or not a safetensors file", n64, maxHeaderSize)
	}
	n := int64(n64)
	if n > size-8 {
		return nil, fmt.Errorf("truncated: header length is %d but only %d bytes follow the length prefix", n, size-8)
	}
	if n < 2 {
		return nil, fmt.Errorf("header length %d is too small for a JSON object", n)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	if buf[0] != '{' {
		return nil, fmt.Errorf("header does not start with '{': not a safetensors file")
	}
	if !utf8.Valid(buf) {
		return nil, fmt.Errorf("header is not valid UTF-8")
	}
	h := &header{size: n, tensors: map[string]tensorInfo{}}
	if err := parseHeaderJSON(buf, h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := checkOffsets(h.tensors, size-8-n); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHeaderJSON decodes the top-level header object, rejecting duplicate
// keys and trailing data.
func parseHeaderJSON(buf []byte, h *header) error {
	dec := json.NewDecoder(bytes.NewReader(buf))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("invalid JSON: expected a key")
		}
		if seen[key] {
			return fmt.Errorf("key %s appears twice", safefile.Quote(key))
		}
		seen[key] = true
		if key == "__metadata__" {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return fmt.Errorf("__metadata__ is not a map of strings to strings: %v", jsonError(err))
			}
			h.metadata = md
			continue
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonError(err)
		}
		ti, err := decodeTensorInfo(raw)
		if err != nil {
			return fmt.Errorf("tensor %s: %v", safefile.Quote(key), err)
		}
		if err := checkTensor(ti); err != nil {
			return fmt.Errorf("tensor %s: %w", safefile.Quote(key), err)
		}
		h.tensors[key] = ti
	}
	if _, err := dec.Token(); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// decodeTensorInfo decodes a tensor entry. Field names are matched exactly
// (encoding/json alone would also accept "DTYPE"); unknown fields are ignored.
func decodeTensorInfo(raw json.RawMessage) (tensorInfo, error) {
	var ti tensorInfo
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return ti, fmt.Errorf("not a JSON object")
	}
	for _, f := range []struct {
		name string
		dst  any
	}{{"dtype", &ti.Dtype}, {"shape", &ti.Shape}, {"data_offsets", &ti.DataOffsets}} {
		v, ok := fields[f.name]
		if !ok {
			return ti, fmt.Errorf("field %q is missing", f.name)
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return ti, fmt.Errorf("field %q: %v", f.name, jsonError(err))
		}
	}
	return ti, nil
}

// jsonError describes a JSON decoding error by position and kind only:
// encoding/json's messages quote characters and number literals of the
// input, and errors never hold file contents.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at header byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("JSON value at header byte %d has the wrong type (want %s)", te.Offset, te.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("invalid JSON: unexpected end of header")
	}
	return fmt.Errorf("invalid JSON")
}

// checkTensor validates one tensor entry on its own.
func checkTensor(ti tensorInfo) error {
	es, ok := dtypeSize[ti.Dtype]
	if !ok {
		return fmt.Errorf("unknown dtype %s", safefile.Quote(ti.Dtype))
	}
	if ti.Shape == nil {
		return fmt.Errorf("shape is missing")
	}
	if len(ti.DataOffsets) != 2 {
		return fmt.Errorf("data_offsets must have 2 entries, has %d", len(ti.DataOffsets))
	}
	b, e := ti.DataOffsets[0], ti.DataOffsets[1]
	if b < 0 || e < b {
		return fmt.Errorf("invalid data_offsets [%d, %d]", b, e)
	}
	numel := int64(1)
	for _, d := range ti.Shape {
		var ok bool
		if numel, ok = mulCheck(numel, d); !ok {
			return fmt.Errorf("invalid shape %v", ti.Shape)
		}
	}
	nb, ok := mulCheck(numel, es)
	if !ok || nb != e-b {
		return fmt.Errorf("data_offsets [%d, %d] span %d bytes, but %s%v needs %d", b, e, e-b, ti.Dtype, ti.Shape, numel*es)
	}
	return nil
}

// checkOffsets checks that the tensors tile the byte buffer [0, bufLen)
// without gaps or overlaps, as the safetensors specification requires.
func checkOffsets(tensors map[string]tensorInfo, bufLen int64) error {
	names := make([]string, 0, len(tensors))
	for k := range tensors {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := tensors[names[i]].DataOffsets, tensors[names[j]].DataOffsets
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		if a[1] != b[1] {
			return a[1] < b[1]
		}
		return names[i] < names[j]
	})
	var end int64
	for _, k := range names {
		off := tensors[k].DataOffsets
		if off[0] != end {
			if off[0] > bufLen {
				return fmt.Errorf("truncated: tensor %q starts at byte %d of the data but the data has %d bytes", k, off[0], bufLen)
			}
			return fmt.Errorf("tensor %q starts at byte %d, expected %d (gap or overlap in data_offsets)", k, off[0], end)
		}
		end = off[1]
	}
	if end > bufLen {
		return fmt.Errorf("truncated: tensors need %d bytes of data but the file has %d", end, bufLen)
	}
	if end != bufLen {
		return fmt.Errorf("%d bytes of data follow the last tensor (corrupt data_offsets or trailing garbage)", bufLen-end)
	}
	return nil
}
