package ftp

import (
	"io"
	"path"
	"strconv"
	"strings"
)

// Disk full. An upload (STOR, APPE, STOU) whose write fails with ENOSPC or EDQUOT is rolled
// back as an upload past max_upload_size is: a new file is removed, an existing one (APPE,
// STOR after REST) is truncated to its size before the transfer, so SIZE tells a client where
// to resume once space returns. The rest of the client's data is read and dropped (up to
// drainLimit), so the client finishes sending and reads the reply rather than a reset; the
// library's "550 Issue during transfer: network error: …" is replaced by RFC 959's
// "452 Requested action not taken. Insufficient storage space in system." The control
// connection stays usable.

// drainLimit bounds what is read and dropped after the disk filled.
const drainLimit = 64 << 20

// noSpaceReply is the reply for an upload that ran out of disk space.
const noSpaceReply = "452 Insufficient storage space in system; the upload was not stored.\r\n"

// drainAfterFull reads and drops the rest of an upload that ran out of space.
func (f *jailFile) drainAfterFull(r io.Reader) {
	if f.full {
		_, _ = io.CopyN(io.Discard, r, drainLimit)
	}
}

// session returns the library session's state, or nil before the greeting.
func (c *controlConn) session() *session {
	cc := c.context()
	if cc == nil {
		return nil
	}
	sess, _ := cc.Extra().(*session)
	return sess
}

// storageReply rewrites a library reply line: the failure of an upload that ran out of space
// becomes 452, and the replies to a STOU name the file (RFC 1123 §4.1.2.9). ok is false when
// the line stays as it is.
func (c *controlConn) storageReply(p []byte) (line []byte, ok bool) {
	if len(p) < 4 || p[3] != ' ' {
		return nil, false
	}
	if name := c.stou.Load(); name != nil {
		switch p[0] {
		case '1':
			return []byte("150 FILE: " + *name + "\r\n"), true
		case '2':
			c.stou.Store(nil)
			return []byte("226 Transfer complete; stored as " + *name + "\r\n"), true
		case '4', '5':
			c.stou.Store(nil)
		}
	}
	if p[0] != '5' && p[0] != '4' {
		return nil, false
	}
	if sess := c.session(); sess != nil && sess.fs != nil && sess.fs.full.Swap(false) {
		return []byte(noSpaceReply), true
	}
	return nil, false
}

// stouLine turns "STOU [base]" into "STOR <unique name>" for the library (which does not
// implement STOU) and remembers the name for the replies. The name is base (default "stou")
// if no such file exists in the current directory, else base.1, base.2, … as vsftpd does.
func (c *controlConn) stouLine(line []byte) []byte {
	cmd, arg := splitCommand(string(line))
	if cmd != "STOU" || !c.loggedIn.Load() {
		return line
	}
	sess, cc := c.session(), c.context()
	if sess == nil || sess.fs == nil || cc == nil {
		return line
	}
	base := strings.TrimSpace(arg)
	if base == "" {
		base = "stou"
	}
	name := base
	for i := 1; i < 10000; i++ {
		if _, err := sess.fs.Stat(path.Join(cc.Path(), name)); err != nil {
			break
		}
		name = base + "." + strconv.Itoa(i)
	}
	c.stou.Store(&name)
	return []byte("STOR " + name + "\r\n")
}
