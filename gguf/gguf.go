// Package gguf reads and writes GGUF files (versions 2 and 3, little-endian),
// the container format used by llama.cpp for models, control vectors and
// matsteer steering files.
//
// It is low-level: steering files are read and written through package
// steer, or the root package's Steering.
//
// A file is a header (magic "GGUF", version, tensor and key/value counts),
// typed key/value metadata, tensor descriptors and an aligned data section.
// Metadata values are held as plain Go values:
//
//	uint8 int8 uint16 int16 uint32 int32 uint64 int64 float32 float64 bool string
//
// arrays of those as the matching slice type ([]uint8 ... []string), and
// arrays of arrays as []any whose elements are themselves array values.
//
// Tensor data is kept as raw little-endian bytes; [Tensor.Float32s] decodes
// F32 tensors and [NewF32Tensor] builds them. Parsing never trusts a length
// field further than the bytes that are actually present, so it is safe on
// untrusted input.
package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/matsteer/matsteer/internal/safefile"
)

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// Version is the GGUF version written by this package.
const Version = 3

// DefaultAlignment is the data alignment used when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides the data alignment.
const KeyAlignment = "general.alignment"

// MaxNameLen is the longest tensor name llama.cpp accepts (GGML_MAX_NAME-1).
const MaxNameLen = 63

// MaxDims is the largest number of tensor dimensions (GGML_MAX_DIMS).
const MaxDims = 4

// maxArrayDepth bounds nesting of arrays of arrays.
const maxArrayDepth = 8

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// scalarSize is the encoded size of fixed-size scalar types (0 for string/array/unknown).
func (t ValueType) scalarSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// TensorType is a ggml tensor element type.
type TensorType uint32

// Tensor types whose storage size this package knows. Others are rejected.
const (
	TensorF32  TensorType = 0
	TensorF16  TensorType = 1
	TensorQ4_0 TensorType = 2
	TensorQ4_1 TensorType = 3
	TensorQ5_0 TensorType = 6
	TensorQ5_1 TensorType = 7
	TensorQ8_0 TensorType = 8
	TensorQ8_1 TensorType = 9
	TensorQ2_K TensorType = 10
	TensorQ3_K TensorType = 11
	TensorQ4_K TensorType = 12
	TensorQ5_K TensorType = 13
	TensorQ6_K TensorType = 14
	TensorQ8_K TensorType = 15
	TensorI8   TensorType = 24
	TensorI16  TensorType = 25
	TensorI32  TensorType = 26
	TensorI64  TensorType = 27
	TensorF64  TensorType = 28
	TensorBF16 TensorType = 30
)

type typeLayout struct {
	name      string
	blockSize uint64 // elements per block
	typeSize  uint64 // bytes per block
}

var tensorLayouts = map[TensorType]typeLayout{
	TensorF32:  {"F32", 1, 4},
	TensorF16:  {"F16", 1, 2},
	TensorQ4_0: {"Q4_0", 32, 18},
	TensorQ4_1: {"Q4_1", 32, 20},
	TensorQ5_0: {"Q5_0", 32, 22},
	TensorQ5_1: {"Q5_1", 32, 24},
	TensorQ8_0: {"Q8_0", 32, 34},
	TensorQ8_1: {"Q8_1", 32, 36},
	TensorQ2_K: {"Q2_K", 256, 84},
	TensorQ3_K: {"Q3_K", 256, 110},
	TensorQ4_K: {"Q4_K", 256, 144},
	TensorQ5_K: {"Q5_K", 256, 176},
	TensorQ6_K: {"Q6_K", 256, 210},
	TensorQ8_K: {"Q8_K", 256, 292},
	TensorI8:   {"I8", 1, 1},
	TensorI16:  {"I16", 1, 2},
	TensorI32:  {"I32", 1, 4},
	TensorI64:  {"I64", 1, 8},
	TensorF64:  {"F64", 1, 8},
	TensorBF16: {"BF16", 1, 2},
}

func (t TensorType) String() string {
	if l, ok := tensorLayouts[t]; ok {
		return l.name
	}
	return fmt.Sprintf("TensorType(%d)", uint32(t))
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value any
}

// Tensor is one tensor: its name, dimensions (ne[0] first, the fastest
// varying), element type and raw little-endian data.
type Tensor struct {
	Name string
	Dims []uint64
	Type TensorType
	Data []byte
}

// NumElements is the product of the dimensions.
func (t *Tensor) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// NewF32Tensor returns an F32 tensor holding values with the given dims
// (one dim of len(values) when dims is empty).
func NewF32Tensor(name string, values []float32, dims ...uint64) Tensor {
	if len(dims) == 0 {
		dims = []uint64{uint64(len(values))}
	}
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, Dims: append([]uint64(nil), dims...), Type: TensorF32, Data: data}
}

// Float32s decodes an F32 tensor.
func (t *Tensor) Float32s() ([]float32, error) {
	if t.Type != TensorF32 {
		return nil, fmt.Errorf("tensor %q has type %s, want F32", t.Name, t.Type)
	}
	if uint64(len(t.Data)) != 4*t.NumElements() {
		return nil, fmt.Errorf("tensor %q has %d data bytes, want %d", t.Name, len(t.Data), 4*t.NumElements())
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// File is a parsed GGUF file. KV keeps the file order; tensors keep theirs.
type File struct {
	Version uint32
	KV      []KV
	Tensors []Tensor
}

// Get returns the value of key.
func (f *File) Get(key string) (any, bool) {
	for i := range f.KV {
		if f.KV[i].Key == key {
			return f.KV[i].Value, true
		}
	}
	return nil, false
}

// Set replaces the value of key, or appends it.
func (f *File) Set(key string, value any) {
	for i := range f.KV {
		if f.KV[i].Key == key {
			f.KV[i].Value = value
			return
		}
	}
	f.KV = append(f.KV, KV{Key: key, Value: value})
}

// Tensor returns the tensor called name, or nil.
func (f *File) Tensor(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// String returns the string value of key.
func (f *File) String(key string) (string, error) {
	v, ok := f.Get(key)
	if !ok {
		return "", fmt.Errorf("missing key %q", key)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("key %q has type %s, want string", key, typeName(v))
	}
	return s, nil
}

// Int returns the value of an integer key of any integer type.
func (f *File) Int(key string) (int64, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, fmt.Errorf("missing key %q", key)
	}
	n, ok := AsInt(v)
	if !ok {
		return 0, fmt.Errorf("key %q has type %s, want an integer", key, typeName(v))
	}
	return n, nil
}

// AsInt converts any integer metadata value to int64 (false if it is not an
// integer or does not fit).
func AsInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

func typeName(v any) string {
	if t, err := valueType(v); err == nil {
		return t.String()
	}
	return fmt.Sprintf("%T", v)
}

// Alignment returns the data alignment declared by the file (or the default).
func (f *File) Alignment() (uint64, error) {
	v, ok := f.Get(KeyAlignment)
	if !ok {
		return DefaultAlignment, nil
	}
	a, ok := v.(uint32)
	if !ok {
		return 0, fmt.Errorf("%s has type %s, want uint32", KeyAlignment, typeName(v))
	}
	if a == 0 || a&(a-1) != 0 {
		return 0, fmt.Errorf("%s = %d is not a power of two", KeyAlignment, a)
	}
	return uint64(a), nil
}

// MaxReadBytes is the largest file [ReadFile] reads. ReadFile holds the
// whole file in memory, so it serves small GGUF files: steering files and
// llama.cpp control vectors (a few MB even for wide models with many
// attributes). Models are not read with it; llama.cpp maps them itself.
const MaxReadBytes = 256 << 20

// ReadFile parses the GGUF file at path, which must be a regular file of at
// most [MaxReadBytes] bytes.
func ReadFile(path string) (*File, error) {
	return ReadFileLimit(path, MaxReadBytes)
}

// ReadFileLimit is [ReadFile] with a chosen size limit in bytes.
func ReadFileLimit(path string, maxBytes int64) (*File, error) {
	data, err := safefile.ReadFile(path, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	return f, nil
}

// WriteFile writes f to path atomically (a temporary file in the same
// directory, then a rename).
func (f *File) WriteFile(path string) error {
	data, err := f.Marshal()
	if err != nil {
		return fmt.Errorf("gguf %s: %w", path, err)
	}
	return WriteFileAtomic(path, data)
}

// WriteFileAtomic writes data to a temporary file next to path, syncs it and
// renames it over path.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(name, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return nil
}

// ---- parsing ----

// ErrTruncated reports input that ends before the structure it describes.
var ErrTruncated = errors.New("truncated file")

// ErrNotGGUF reports input that does not start with the GGUF magic.
var ErrNotGGUF = errors.New("not a GGUF file (bad magic)")

type reader struct {
	b   []byte
	off int
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) take(n int, what string) ([]byte, error) {
	if n < 0 || n > r.remaining() {
		return nil, fmt.Errorf("%w: reading %s at offset %d", ErrTruncated, what, r.off)
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) u8(what string) (uint8, error) {
	b, err := r.take(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u16(what string) (uint16, error) {
	b, err := r.take(2, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (r *reader) str(what string) (string, error) {
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.remaining()) {
		return "", fmt.Errorf("%w: %s of %d bytes at offset %d", ErrTruncated, what, n, r.off)
	}
	b, err := r.take(int(n), what)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Parse decodes a complete GGUF file held in data.
func Parse(data []byte) (*File, error) {
	r := &reader{b: data}
	magic, err := r.take(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, ErrNotGGUF // never show the bytes: the file may be anything
	}
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	if version != 2 && version != 3 {
		return nil, fmt.Errorf("unsupported GGUF version %d (want 2 or 3)", version)
	}
	nTensors, err := r.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := r.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// Every KV needs at least 12 bytes (key length + type), every tensor info 24.
	if nKV > uint64(r.remaining())/12 {
		return nil, fmt.Errorf("%w: %d metadata entries cannot fit in %d bytes", ErrTruncated, nKV, r.remaining())
	}
	f := &File{Version: version}
	seen := make(map[string]bool, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := r.str("metadata key")
		if err != nil {
			return nil, fmt.Errorf("metadata entry %d: %w", i, err)
		}
		if key == "" {
			return nil, fmt.Errorf("metadata entry %d: empty key", i)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate metadata key %s", safefile.Quote(key))
		}
		seen[key] = true
		t, err := r.u32("value type")
		if err != nil {
			return nil, fmt.Errorf("metadata %s: %w", safefile.Quote(key), err)
		}
		v, err := r.value(ValueType(t), 0)
		if err != nil {
			return nil, fmt.Errorf("metadata %s: %w", safefile.Quote(key), err)
		}
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	align, err := f.Alignment()
	if err != nil {
		return nil, err
	}
	if nTensors > uint64(r.remaining())/24 {
		return nil, fmt.Errorf("%w: %d tensors cannot fit in %d bytes", ErrTruncated, nTensors, r.remaining())
	}
	type info struct {
		off, size uint64
	}
	infos := make([]info, 0, nTensors)
	names := make(map[string]bool, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		name, err := r.str("tensor name")
		if err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, err)
		}
		if name == "" || len(name) > MaxNameLen {
			return nil, fmt.Errorf("tensor %d: name of %d bytes, want 1..%d", i, len(name), MaxNameLen)
		}
		if names[name] {
			return nil, fmt.Errorf("duplicate tensor name %q", name)
		}
		names[name] = true
		nd, err := r.u32("dimension count")
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if nd == 0 || nd > MaxDims {
			return nil, fmt.Errorf("tensor %q: %d dimensions (want 1..%d)", name, nd, MaxDims)
		}
		dims := make([]uint64, nd)
		nel := uint64(1)
		for j := range dims {
			if dims[j], err = r.u64("dimension"); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
			if dims[j] == 0 || dims[j] > math.MaxInt64/nel {
				return nil, fmt.Errorf("tensor %q: invalid dimensions", name)
			}
			nel *= dims[j]
		}
		tt, err := r.u32("tensor type")
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		layout, ok := tensorLayouts[TensorType(tt)]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unsupported tensor type %d", name, tt)
		}
		if dims[0]%layout.blockSize != 0 {
			return nil, fmt.Errorf("tensor %q: first dimension %d is not a multiple of the %s block size %d", name, dims[0], layout.name, layout.blockSize)
		}
		blocks := nel / layout.blockSize
		if blocks > math.MaxInt64/layout.typeSize {
			return nil, fmt.Errorf("tensor %q: too large", name)
		}
		off, err := r.u64("tensor offset")
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if off%align != 0 {
			return nil, fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", name, off, align)
		}
		f.Tensors = append(f.Tensors, Tensor{Name: name, Dims: dims, Type: TensorType(tt)})
		infos = append(infos, info{off: off, size: blocks * layout.typeSize})
	}
	start := (uint64(r.off) + align - 1) / align * align
	if nTensors > 0 && start > uint64(len(data)) {
		return nil, fmt.Errorf("%w: data section starts at %d past the end (%d bytes)", ErrTruncated, start, len(data))
	}
	for i, in := range infos {
		avail := uint64(len(data)) - start
		if in.off > avail || in.size > avail-in.off {
			return nil, fmt.Errorf("%w: tensor %q needs bytes %d..%d of a %d-byte data section", ErrTruncated, f.Tensors[i].Name, in.off, in.off+in.size, avail)
		}
		f.Tensors[i].Data = data[start+in.off : start+in.off+in.size : start+in.off+in.size]
	}
	return f, nil
}

func (r *reader) value(t ValueType, depth int) (any, error) {
	switch t {
	case TypeUint8:
		return r.u8("uint8")
	case TypeInt8:
		v, err := r.u8("int8")
		return int8(v), err
	case TypeUint16:
		return r.u16("uint16")
	case TypeInt16:
		v, err := r.u16("int16")
		return int16(v), err
	case TypeUint32:
		return r.u32("uint32")
	case TypeInt32:
		v, err := r.u32("int32")
		return int32(v), err
	case TypeUint64:
		return r.u64("uint64")
	case TypeInt64:
		v, err := r.u64("int64")
		return int64(v), err
	case TypeFloat32:
		v, err := r.u32("float32")
		return math.Float32frombits(v), err
	case TypeFloat64:
		v, err := r.u64("float64")
		return math.Float64frombits(v), err
	case TypeBool:
		v, err := r.u8("bool")
		if err != nil {
			return nil, err
		}
		if v > 1 {
			return nil, fmt.Errorf("invalid bool byte (want 0 or 1)")
		}
		return v == 1, nil
	case TypeString:
		return r.str("string")
	case TypeArray:
		if depth >= maxArrayDepth {
			return nil, fmt.Errorf("arrays nested deeper than %d", maxArrayDepth)
		}
		et, err := r.u32("array type")
		if err != nil {
			return nil, err
		}
		n, err := r.u64("array length")
		if err != nil {
			return nil, err
		}
		return r.array(ValueType(et), n, depth+1)
	}
	return nil, fmt.Errorf("unknown value type %d", uint32(t))
}

func (r *reader) array(et ValueType, n uint64, depth int) (any, error) {
	min := uint64(et.scalarSize())
	switch et {
	case TypeString:
		min = 8
	case TypeArray:
		min = 12
	}
	if min == 0 {
		return nil, fmt.Errorf("unknown array element type %d", uint32(et))
	}
	if n > uint64(r.remaining())/min {
		return nil, fmt.Errorf("%w: array of %d %s at offset %d", ErrTruncated, n, et, r.off)
	}
	switch et {
	case TypeUint8:
		b, _ := r.take(int(n), "array")
		return append([]uint8(nil), b...), nil
	case TypeInt8:
		return decodeFixed(r, n, 1, func(b []byte) int8 { return int8(b[0]) }), nil
	case TypeUint16:
		return decodeFixed(r, n, 2, binary.LittleEndian.Uint16), nil
	case TypeInt16:
		return decodeFixed(r, n, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }), nil
	case TypeUint32:
		return decodeFixed(r, n, 4, binary.LittleEndian.Uint32), nil
	case TypeInt32:
		return decodeFixed(r, n, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }), nil
	case TypeUint64:
		return decodeFixed(r, n, 8, binary.LittleEndian.Uint64), nil
	case TypeInt64:
		return decodeFixed(r, n, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }), nil
	case TypeFloat32:
		return decodeFixed(r, n, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }), nil
	case TypeFloat64:
		return decodeFixed(r, n, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }), nil
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			v, _ := r.u8("bool")
			if v > 1 {
				return nil, fmt.Errorf("invalid bool byte in array (want 0 or 1)")
			}
			out[i] = v == 1
		}
		return out, nil
	case TypeString:
		out := make([]string, 0, n)
		for i := uint64(0); i < n; i++ {
			s, err := r.str("string")
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	default: // TypeArray
		out := make([]any, 0, n)
		for i := uint64(0); i < n; i++ {
			v, err := r.value(TypeArray, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
}

func decodeFixed[T any](r *reader, n uint64, size int, dec func([]byte) T) []T {
	b, _ := r.take(int(n)*size, "array") // length checked by the caller
	out := make([]T, n)
	for i := range out {
		out[i] = dec(b[i*size:])
	}
	return out
}

// ---- writing ----

func valueType(v any) (ValueType, error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, nil
	case int8:
		return TypeInt8, nil
	case uint16:
		return TypeUint16, nil
	case int16:
		return TypeInt16, nil
	case uint32:
		return TypeUint32, nil
	case int32:
		return TypeInt32, nil
	case uint64:
		return TypeUint64, nil
	case int64:
		return TypeInt64, nil
	case float32:
		return TypeFloat32, nil
	case float64:
		return TypeFloat64, nil
	case bool:
		return TypeBool, nil
	case string:
		return TypeString, nil
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []uint64, []int64, []float32, []float64, []bool, []string, []any:
		return TypeArray, nil
	}
	return 0, fmt.Errorf("unsupported metadata value type %T", v)
}

func elemType(v any) ValueType {
	switch v.(type) {
	case []uint8:
		return TypeUint8
	case []int8:
		return TypeInt8
	case []uint16:
		return TypeUint16
	case []int16:
		return TypeInt16
	case []uint32:
		return TypeUint32
	case []int32:
		return TypeInt32
	case []uint64:
		return TypeUint64
	case []int64:
		return TypeInt64
	case []float32:
		return TypeFloat32
	case []float64:
		return TypeFloat64
	case []bool:
		return TypeBool
	case []string:
		return TypeString
	}
	return TypeArray
}

type writer struct{ bytes.Buffer }

func (w *writer) u32(v uint32) { w.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (w *writer) u64(v uint64) { w.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (w *writer) str(s string) { w.u64(uint64(len(s))); w.WriteString(s) }

func (w *writer) value(v any, depth int) error {
	var b [8]byte
	switch x := v.(type) {
	case uint8:
		w.WriteByte(x)
	case int8:
		w.WriteByte(byte(x))
	case uint16:
		binary.LittleEndian.PutUint16(b[:], x)
		w.Write(b[:2])
	case int16:
		binary.LittleEndian.PutUint16(b[:], uint16(x))
		w.Write(b[:2])
	case uint32:
		w.u32(x)
	case int32:
		w.u32(uint32(x))
	case uint64:
		w.u64(x)
	case int64:
		w.u64(uint64(x))
	case float32:
		w.u32(math.Float32bits(x))
	case float64:
		w.u64(math.Float64bits(x))
	case bool:
		if x {
			w.WriteByte(1)
		} else {
			w.WriteByte(0)
		}
	case string:
		w.str(x)
	default:
		if depth >= maxArrayDepth {
			return fmt.Errorf("arrays nested deeper than %d", maxArrayDepth)
		}
		return w.array(v, depth+1)
	}
	return nil
}

func (w *writer) array(v any, depth int) error {
	et := elemType(v)
	w.u32(uint32(et))
	switch x := v.(type) {
	case []uint8:
		w.u64(uint64(len(x)))
		w.Write(x)
		return nil
	case []int8:
		return writeEach(w, x, depth)
	case []uint16:
		return writeEach(w, x, depth)
	case []int16:
		return writeEach(w, x, depth)
	case []uint32:
		return writeEach(w, x, depth)
	case []int32:
		return writeEach(w, x, depth)
	case []uint64:
		return writeEach(w, x, depth)
	case []int64:
		return writeEach(w, x, depth)
	case []float32:
		return writeEach(w, x, depth)
	case []float64:
		return writeEach(w, x, depth)
	case []bool:
		return writeEach(w, x, depth)
	case []string:
		return writeEach(w, x, depth)
	case []any:
		for i, e := range x {
			if t, err := valueType(e); err != nil || t != TypeArray {
				return fmt.Errorf("element %d of an array of arrays is %T, not an array", i, e)
			}
		}
		return writeEach(w, x, depth)
	}
	return fmt.Errorf("unsupported metadata value type %T", v)
}

func writeEach[T any](w *writer, xs []T, depth int) error {
	w.u64(uint64(len(xs)))
	for _, x := range xs {
		if err := w.value(x, depth); err != nil {
			return err
		}
	}
	return nil
}

// Marshal encodes f as a GGUF version 3 file. Tensor offsets are computed
// here; each tensor starts at a multiple of the alignment.
func (f *File) Marshal() ([]byte, error) {
	align, err := f.Alignment()
	if err != nil {
		return nil, err
	}
	var w writer
	w.WriteString(Magic)
	w.u32(Version)
	w.u64(uint64(len(f.Tensors)))
	w.u64(uint64(len(f.KV)))
	seen := make(map[string]bool, len(f.KV))
	for _, kv := range f.KV {
		if kv.Key == "" {
			return nil, errors.New("empty metadata key")
		}
		if seen[kv.Key] {
			return nil, fmt.Errorf("duplicate metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		t, err := valueType(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", kv.Key, err)
		}
		w.str(kv.Key)
		w.u32(uint32(t))
		if err := w.value(kv.Value, 0); err != nil {
			return nil, fmt.Errorf("metadata %q: %w", kv.Key, err)
		}
	}
	names := make(map[string]bool, len(f.Tensors))
	offset := uint64(0)
	for _, t := range f.Tensors {
		if t.Name == "" || len(t.Name) > MaxNameLen {
			return nil, fmt.Errorf("tensor name %q must be 1..%d bytes", t.Name, MaxNameLen)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		layout, ok := tensorLayouts[t.Type]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unsupported tensor type %d", t.Name, uint32(t.Type))
		}
		if len(t.Dims) == 0 || len(t.Dims) > MaxDims {
			return nil, fmt.Errorf("tensor %q: %d dimensions (want 1..%d)", t.Name, len(t.Dims), MaxDims)
		}
		for _, d := range t.Dims {
			if d == 0 {
				return nil, fmt.Errorf("tensor %q: zero dimension", t.Name)
			}
		}
		if t.Dims[0]%layout.blockSize != 0 {
			return nil, fmt.Errorf("tensor %q: first dimension %d is not a multiple of the block size %d", t.Name, t.Dims[0], layout.blockSize)
		}
		if want := t.NumElements() / layout.blockSize * layout.typeSize; uint64(len(t.Data)) != want {
			return nil, fmt.Errorf("tensor %q: %d data bytes, want %d", t.Name, len(t.Data), want)
		}
		w.str(t.Name)
		w.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			w.u64(d)
		}
		w.u32(uint32(t.Type))
		w.u64(offset)
		offset += (uint64(len(t.Data)) + align - 1) / align * align
	}
	pad := func() {
		for uint64(w.Len())%align != 0 {
			w.WriteByte(0)
		}
	}
	if len(f.Tensors) > 0 {
		pad()
	}
	for _, t := range f.Tensors {
		w.Write(t.Data)
		pad()
	}
	return w.Bytes(), nil
}

// SortedKeys returns the metadata keys in lexical order (handy for printing).
func (f *File) SortedKeys() []string {
	keys := make([]string, len(f.KV))
	for i, kv := range f.KV {
		keys[i] = kv.Key
	}
	sort.Strings(keys)
	return keys
}
