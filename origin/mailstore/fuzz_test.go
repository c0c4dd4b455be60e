package mailstore

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCheckName: a folder name that passes CheckName never escapes the user's Maildir.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"INBOX", "a.b", "../x", ".x", "x.", "a..b", "a/b", "\x00", "Ünïcode", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckName(name) != nil {
			return
		}
		root := "/r/u"
		p := filepath.Join(root, "."+name)
		if filepath.Dir(p) != root || strings.Contains(name, "/") {
			t.Fatalf("%q maps outside the user's Maildir: %s", name, p)
		}
	})
}

// FuzzFlags: file-name parsing and flag normalisation never panic and are idempotent.
func FuzzFlags(f *testing.F) {
	for _, s := range []string{"key:2,FS", "key", "key:1,x", "k:2,SSSFa", ":", "k:2,\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		_, flags := splitName(name)
		n := NormalizeFlags(flags)
		if NormalizeFlags(n) != n {
			t.Fatalf("NormalizeFlags not idempotent on %q", flags)
		}
	})
}
