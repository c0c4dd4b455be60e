package ftp

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// controlConn wraps a control connection. It hands the protocol library one command line per
// Read, and answers a few commands itself before the library sees them:
//   - STRU (RFC 959 §4.1.2: F is accepted, R and P are not supported),
//   - PORT/EPRT to a port below 1024 or to another host (FTP bounce, RFC 2577), or when
//     active mode is disabled,
//   - any path argument that climbs above the user's root ("CWD ../..", "RETR ../../x"),
//     which is answered 550 instead of being clamped to the root,
//   - a transfer command before any PASV/EPSV/PORT/EPRT (425), EPSV ALL and EPSV with a
//     protocol number (RFC 2428 §3-4), and HELP (214),
//   - REST with an argument that is not a byte count (501; the library says 550).
//
// On the way out it turns the library's "421 Could not listen for passive connection" (which
// tells clients the service is closing) into 425 Can't open data connection (RFC 959).
//
// Because the library reads the next line only after it has handled the previous one, the
// session state (current directory, login) is current when a line is filtered.
type controlConn struct {
	net.Conn
	srv      *Server
	ip       netip.Addr
	raw      []byte // bytes read from the network, not yet split into lines
	pending  []byte // the line being handed to the library
	readErr  error
	wmu      sync.Mutex
	closed   atomic.Bool
	cc       atomic.Value // ftpserver.ClientContext, set once the library greets the client
	loggedIn atomic.Bool
	stou     atomic.Pointer[string] // the file name of a STOU in progress, for its replies

	// Data connection state, seen from the commands (only the reading goroutine uses it).
	dataReady bool // a PASV/EPSV/PORT/EPRT was passed on since the last transfer command
	epsvAll   bool // the client sent EPSV ALL: only EPSV may set up data connections
}

// maxLine is the longest command line filtered; longer ones go to the library, which rejects
// them.
const maxLine = 4096

// Read returns at most one command line.
func (c *controlConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if i := bytes.IndexByte(c.raw, '\n'); i >= 0 {
			line := c.stouLine(c.raw[:i+1])
			c.raw = c.raw[i+1:]
			if reply := c.filter(line); reply != "" {
				c.stou.Store(nil)
				c.reply(reply)
				continue
			}
			c.pending = line
			break
		}
		if len(c.raw) > maxLine || (c.readErr != nil && len(c.raw) > 0) {
			c.pending, c.raw = c.raw, nil
			break
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		if err := c.fill(); err != nil {
			return 0, err // a timeout: the library decides, and may read again
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// fill reads more bytes from the network (the library's deadline applies). A timeout is
// returned to the caller and not kept: the library extends the deadline during transfers and
// reads again. Other errors are kept and returned once the buffered lines are handed out.
func (c *controlConn) fill() error {
	var buf [1024]byte
	n, err := c.Conn.Read(buf[:])
	c.raw = append(c.raw, buf[:n]...)
	if err == nil {
		return nil
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() && n == 0 {
		return err
	}
	c.readErr = err
	return nil
}

// Write serialises the library's replies with the filter's, rewriting a few of them (see
// storageReply and passiveFailure). The library writes (and flushes) one reply line per call.
func (c *controlConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if q, ok := c.storageReply(p); ok {
		if _, err := c.Conn.Write(q); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if passiveFailure(p) {
		q := append([]byte("425"), p[3:]...)
		if _, err := c.Conn.Write(q); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// passiveFailure reports whether a reply line is the library's 421 for a PASV/EPSV whose data
// listener could not be opened (no free port in the passive range, no TLS configuration).
func passiveFailure(p []byte) bool {
	return bytes.HasPrefix(p, []byte("421 Could not listen for passive connection")) ||
		bytes.HasPrefix(p, []byte("421 Cannot get a TLS config"))
}

// reply writes one reply line.
func (c *controlConn) reply(line string) {
	c.Write([]byte(line + "\r\n"))
}

// Close closes the connection once and releases its connection slot.
func (c *controlConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.srv.release(c)
	return c.Conn.Close()
}

// context returns the library's client context, or nil before the greeting.
func (c *controlConn) context() ftpserver.ClientContext {
	cc, _ := c.cc.Load().(ftpserver.ClientContext)
	return cc
}

// filter answers line itself and returns the reply, or returns "" to pass it on.
func (c *controlConn) filter(line []byte) string {
	cmd, arg := splitCommand(string(line))
	switch cmd {
	case "STRU":
		return struReply(arg)
	case "HELP":
		return helpReply
	}
	cc := c.context()
	if cc == nil || !c.loggedIn.Load() {
		return ""
	}
	if reply := c.dataSetup(cmd, arg); reply != "" {
		return reply
	}
	if cmd == "REST" {
		if n, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64); err != nil || n < 0 {
			return "501 REST needs a byte count (a non-negative decimal number)."
		}
	}
	if p, ok := pathArgument(cmd, arg); ok && escapesRoot(cc.Path(), p) {
		return "550 " + p + ": permission denied (outside your root directory)"
	}
	return ""
}

// helpReply lists the commands (RFC 959 §4.1.3 HELP).
const helpReply = "214-The following commands are recognized:\r\n" +
	" ABOR APPE CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MFMT MKD MLSD MLST MODE NLST\r\n" +
	" NOOP OPTS PASS PASV PORT PWD QUIT REST RETR RMD RNFR RNTO SIZE STAT STOR STOU STRU\r\n" +
	" SYST TYPE USER XCUP XCWD XMKD XPWD XRMD\r\n" +
	"214 Help OK."

// dataSetup follows data connection commands: it checks PORT/EPRT, handles EPSV ALL and
// EPSV's protocol argument, and refuses a transfer that has no data connection set up.
func (c *controlConn) dataSetup(cmd, arg string) string {
	switch cmd {
	case "PORT", "EPRT", "PASV":
		if c.epsvAll {
			return "503 Only EPSV may be used after EPSV ALL."
		}
		if cmd != "PASV" {
			if reply := c.checkActive(cmd, arg); reply != "" {
				return reply
			}
		}
		c.dataReady = true
	case "EPSV":
		if reply := c.epsvReply(arg); reply != "" {
			return reply
		}
		c.dataReady = true
	case "RETR", "STOR", "APPE", "LIST", "NLST", "MLSD":
		if !c.dataReady {
			return "425 Use PASV, EPSV, PORT or EPRT first."
		}
		c.dataReady = false
	}
	return ""
}

// epsvReply answers EPSV ALL and EPSV with a protocol the control connection does not use;
// a plain EPSV (or one naming the right protocol) goes on to the library.
func (c *controlConn) epsvReply(arg string) string {
	want := "1"
	if !c.ip.Is4() {
		want = "2"
	}
	switch a := strings.ToUpper(strings.TrimSpace(arg)); a {
	case "":
		return ""
	case "ALL":
		c.epsvAll = true
		return "200 EPSV ALL ok; only EPSV will be accepted now."
	case "1", "2":
		if a != want {
			return "522 Network protocol not supported, use (" + want + ")"
		}
		return ""
	}
	return "501 Syntax: EPSV [1|2|ALL]"
}

// splitCommand splits a command line into its upper-cased verb and its argument.
func splitCommand(line string) (string, string) {
	line = strings.TrimRight(line, "\r\n")
	cmd, arg, _ := strings.Cut(line, " ")
	return strings.ToUpper(cmd), arg
}

// struReply answers STRU: only file structure exists here.
func struReply(arg string) string {
	switch strings.ToUpper(strings.TrimSpace(arg)) {
	case "F":
		return "200 Structure set to F."
	case "R", "P":
		return "504 Only file structure (F) is supported."
	}
	return "501 Syntax: STRU F"
}

// checkActive refuses PORT/EPRT when active mode is off, or when the address is not the
// client's own or the port is privileged (RFC 2577 §3). Well-formed, acceptable requests
// pass to the library, which opens the connection later.
func (c *controlConn) checkActive(cmd, arg string) string {
	if !c.srv.cfg.ActiveMode {
		return "502 Active mode is disabled here; use PASV or EPSV."
	}
	parse := parsePORT
	if cmd == "EPRT" {
		parse = parseEPRT
	}
	ap, err := parse(arg)
	if err != nil {
		return "501 " + cmd + ": " + err.Error()
	}
	if ap.Addr().Unmap() != c.ip.Unmap() {
		c.srv.metrics.refused.WithLabelValues("bounce").Inc()
		c.srv.env.Logger.Warn("ftp bounce attempt refused", "remote", c.ip.String(), "target", ap.String())
		return "504 " + cmd + " refused: data connections go only to your own address (RFC 2577)."
	}
	if ap.Port() < 1024 {
		c.srv.metrics.refused.WithLabelValues("bounce").Inc()
		return "504 " + cmd + " refused: privileged port " + strconv.Itoa(int(ap.Port())) + " (RFC 2577)."
	}
	return ""
}

// pathArgument returns the path named by a command's argument, if the command takes one.
func pathArgument(cmd, arg string) (string, bool) {
	switch cmd {
	case "CWD", "XCWD", "RETR", "STOR", "APPE", "DELE", "MKD", "XMKD", "RMD", "XRMD",
		"RNFR", "RNTO", "SIZE", "MDTM", "MLST", "MLSD":
		return arg, arg != ""
	case "CDUP", "XCUP":
		return "..", true
	case "LIST", "NLST", "STAT":
		for strings.HasPrefix(arg, "-") {
			_, arg, _ = strings.Cut(arg, " ")
		}
		return arg, arg != ""
	case "MFMT":
		_, p, ok := strings.Cut(arg, " ")
		return p, ok
	}
	return "", false
}

// escapesRoot reports whether p, taken relative to cwd, climbs above the root.
func escapesRoot(cwd, p string) bool {
	depth := 0
	if !strings.HasPrefix(p, "/") {
		for s := range strings.SplitSeq(cwd, "/") {
			if s != "" && s != "." {
				depth++
			}
		}
	}
	for s := range strings.SplitSeq(p, "/") {
		switch s {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// parsePORT parses "h1,h2,h3,h4,p1,p2" (RFC 959 §4.1.2).
func parsePORT(arg string) (netip.AddrPort, error) {
	parts := strings.Split(strings.TrimSpace(arg), ",")
	if len(parts) != 6 {
		return netip.AddrPort{}, errSyntax("want h1,h2,h3,h4,p1,p2")
	}
	var b [6]byte
	for i, s := range parts {
		n, err := strconv.ParseUint(s, 10, 8)
		if err != nil || s == "" || len(s) > 3 {
			return netip.AddrPort{}, errSyntax("each field must be a number 0-255")
		}
		b[i] = byte(n)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])), nil
}

// parseEPRT parses "|1|132.235.1.2|6275|" or "|2|::1|6275|" (RFC 2428 §2); the first
// character is the delimiter.
func parseEPRT(arg string) (netip.AddrPort, error) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 2 || arg[0] < 33 || arg[0] > 126 {
		return netip.AddrPort{}, errSyntax("want |proto|address|port|")
	}
	f := strings.Split(arg, string(arg[0]))
	if len(f) != 5 || f[0] != "" || f[4] != "" {
		return netip.AddrPort{}, errSyntax("want |proto|address|port|")
	}
	addr, err := netip.ParseAddr(f[2])
	if err != nil || addr.Zone() != "" {
		return netip.AddrPort{}, errSyntax("bad network address")
	}
	if (f[1] == "1") != addr.Is4() || (f[1] != "1" && f[1] != "2") {
		return netip.AddrPort{}, errSyntax("protocol must be 1 (IPv4) or 2 (IPv6) and match the address")
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, errSyntax("bad port")
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// errSyntax is a parameter syntax error (501).
type errSyntax string

func (e errSyntax) Error() string { return string(e) }

// limitListener admits control connections within the total and per-address limits; others
// get a 421 reply and are closed.
type limitListener struct {
	net.Listener
	srv *Server
}

// Accept returns the next admitted connection, wrapped in a controlConn. Errors from the
// underlying listener are returned unchanged (the library recognises a closed listener).
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.srv.admit(nc); c != nil {
			return c, nil
		}
	}
}

// refuse tells a client why it is turned away and closes it.
func refuse(nc net.Conn, msg string) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte("421 " + msg + "\r\n"))
	nc.Close()
}
