package web

import (
	"errors"
	"io"
	"math/rand/v2"
)

// patternSize is the period of the deterministic content behind /bytes and /page objects.
const patternSize = 64 << 10

// pattern is the deterministic content: byte i of every synthetic body is
// pattern[(offset+i) % patternSize], generated once from a fixed seed.
var pattern = func() []byte {
	b := make([]byte, patternSize)
	rng := rand.New(rand.NewPCG(0x6f7574706f7374, 0x776562))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}()

// patternReader is an io.ReadSeeker over size bytes of the pattern starting at offset base.
type patternReader struct {
	base, pos, size int64
}

// newPatternReader returns a reader over size bytes of the pattern from offset base.
func newPatternReader(base, size int64) *patternReader {
	return &patternReader{base: base % patternSize, size: size}
}

// Read copies the next bytes of the pattern.
func (r *patternReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := 0
	for n < len(p) {
		off := (r.base + r.pos) % patternSize
		c := copy(p[n:], pattern[off:])
		n += c
		r.pos += int64(c)
	}
	return n, nil
}

// Seek implements io.Seeker for http.ServeContent's range handling.
func (r *patternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("pattern: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("pattern: negative position")
	}
	r.pos = offset
	return offset, nil
}

// errBadSize is returned by parseSize for anything but digits with an optional k or m.
var errBadSize = errors.New("size must be digits with an optional k or m suffix (e.g. 512, 10k, 1m)")

// errTooLarge is returned by parseSize when the size exceeds the limit.
var errTooLarge = errors.New("size exceeds the configured limit")

// parseSize parses "N", "Nk" or "Nm" (1024-based, either case) and checks it against limit.
// It never overflows: digits beyond the limit stop the parse.
func parseSize(s string, limit int64) (int64, error) {
	if s == "" {
		return 0, errBadSize
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult, s = 1<<10, s[:len(s)-1]
	case 'm', 'M':
		mult, s = 1<<20, s[:len(s)-1]
	}
	if s == "" || len(s) > 19 {
		return 0, errBadSize
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errBadSize
		}
		n = n*10 + int64(c-'0')
		if n > limit/mult {
			return 0, errTooLarge
		}
	}
	return n * mult, nil
}

// parseCount parses a small decimal count (no suffix) and checks it against limit.
func parseCount(s string, limit int) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, errBadSize
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errBadSize
		}
		n = n*10 + int(c-'0')
		if n > limit {
			return 0, errTooLarge
		}
	}
	return n, nil
}
