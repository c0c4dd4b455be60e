package wire

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"testing"
)

// TestDecodeCodings: codings are removed last applied first; bad content is a read error.
func TestDecodeCodings(t *testing.T) {
	gz := func(p []byte) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write(p)
		_ = w.Close()
		return b.Bytes()
	}
	zl := func(p []byte) []byte {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		_, _ = w.Write(p)
		_ = w.Close()
		return b.Bytes()
	}
	content := []byte("the content, twice: the content")
	cases := []struct {
		name    string
		raw     []byte
		codings []Coding
		ok      bool
	}{
		{"gzip", gz(content), []Coding{CodingGzip}, true},
		{"deflate", zl(content), []Coding{CodingDeflate}, true},
		{"gzip then deflate", zl(gz(content)), []Coding{CodingGzip, CodingDeflate}, true},
		{"not gzip", []byte("plain"), []Coding{CodingGzip}, false},
		{"cut short", gz(content)[:20], []Coding{CodingGzip}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := io.ReadAll(DecodeCodings(io.NopCloser(bytes.NewReader(tc.raw)), tc.codings))
			if tc.ok && (err != nil || !bytes.Equal(got, content)) {
				t.Fatalf("%q, %v", got, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("decoded %q without an error", got)
			}
		})
	}
}
