package ftp

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-proxy/outpost/internal/config"
)

// anonymousHome is the anonymous users' root below the FTP root.
const anonymousHome = "anonymous"

// userHome is a user's root below the FTP root.
func userHome(u config.FTPUser) string {
	if u.Home != "" {
		return filepath.Clean(u.Home)
	}
	return u.Name
}

// seedTree creates the FTP root and every user's directory. A user directory that does not
// exist yet is created with a welcome file; the anonymous one gets the demo pub/ tree.
// Existing directories are left alone.
func seedTree(dir string, cfg config.FTPConfig) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if cfg.Anonymous {
		if err := seedDir(filepath.Join(dir, anonymousHome), demoPub()); err != nil {
			return err
		}
	}
	for _, u := range cfg.Users {
		welcome := map[string][]byte{"welcome.txt": []byte("Welcome, " + u.Name + ". This directory is yours alone.\n")}
		if err := seedDir(filepath.Join(dir, userHome(u)), welcome); err != nil {
			return err
		}
	}
	return nil
}

// seedDir creates dir with files when dir does not exist.
func seedDir(dir string, files map[string][]byte) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp := dir + ".seeding"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for name, body := range files {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dir)
}

// demoPub is the anonymous tree: pub/README.txt, a binary file with every byte value (CR and
// LF included, so ASCII-mode mangling shows) and a nested directory.
func demoPub() map[string][]byte {
	bin := make([]byte, 256*1024+17)
	x := uint32(2463534242)
	for i := range bin {
		if i < 256 {
			bin[i] = byte(i)
			continue
		}
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		bin[i] = byte(x)
	}
	return map[string][]byte{
		"pub/README.txt": []byte(readme),
		"pub/sample.bin": bin,
		"pub/docs/rfc959-summary.txt": []byte("RFC 959 defines the File Transfer Protocol: a control connection\r\n" +
			"carrying commands and replies, and data connections for files and listings.\r\n"),
	}
}

const readme = `Outpost demo FTP server
=======================

This is the anonymous, read-only area. Files here:

  README.txt                this file
  sample.bin                262161 bytes of binary data (bytes 0-255, then a fixed xorshift stream)
  docs/rfc959-summary.txt   a short text file with CRLF line ends

Try:  curl ftp://127.0.0.1:2121/pub/README.txt
      curl -x http://127.0.0.1:8080 ftp://127.0.0.1:2121/pub/
`
