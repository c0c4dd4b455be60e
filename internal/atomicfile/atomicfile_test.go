package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "f.json")
	tests := []struct {
		name    string
		fill    func(io.Writer) error
		want    string
		wantErr bool
	}{
		{"creates with parents", func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }, "one", false},
		{"replaces", func(w io.Writer) error { _, err := io.WriteString(w, "two"); return err }, "two", false},
		{"a failed fill leaves the old content", func(w io.Writer) error { io.WriteString(w, "par"); return errors.New("boom") }, "two", true},
	}
	for _, tc := range tests {
		err := Write(path, 0o600, tc.fill)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: err %v", tc.name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != tc.want {
			t.Errorf("%s: content %q, want %q", tc.name, b, tc.want)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}
