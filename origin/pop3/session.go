package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// maxLine is the longest command line accepted: RFC 2449 allows 255 octets, we are generous.
const maxLine = 512

// maxMessage bounds what RETR/TOP read of one message.
const maxMessage = 1 << 30

// errLineTooLong is returned by readLine for over-long commands.
var errLineTooLong = errors.New("pop3: command line too long")

// state is the RFC 1939 session state.
type state int

const (
	stateAuth state = iota
	stateTransaction
)

// session is one POP3 connection.
type session struct {
	s     *Server
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	state state
	tls   bool

	userArg   string
	authFails int
	user      *mailstore.User
	unlock    func()
	box       *mailstore.Mailbox
	validity  uint32
	msgs      []mailstore.Message
	deleted   []bool
}

// newSession wraps an accepted connection.
func newSession(s *Server, c net.Conn) *session {
	return &session{s: s, conn: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 32<<10)}
}

// serve runs the session until QUIT, an error or a timeout.
func (ss *session) serve() {
	ss.s.m.sessions.Inc()
	defer func() {
		if ss.unlock != nil {
			ss.unlock()
		}
	}()
	ss.reply(true, "Outpost POP3 server ready")
	for {
		if !ss.flush() {
			return
		}
		_ = ss.conn.SetReadDeadline(time.Now().Add(ss.s.opts.IdleTimeout))
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			ss.reply(false, "command line too long")
			ss.flush()
			return
		}
		if err != nil {
			return // EOF, timeout or reset: no UPDATE state, nothing is deleted
		}
		cmd, args, err := parseCommand(line)
		if err != nil {
			ss.reply(false, "%s", err.Error())
			continue
		}
		if quit := ss.dispatch(cmd, args); quit {
			ss.flush()
			return
		}
	}
}

// readLine reads one CRLF (or LF) terminated line of at most maxLine octets.
func (ss *session) readLine() (string, error) {
	line, err := ss.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLine {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// parseCommand splits a command line into an upper-cased keyword and its arguments
// (RFC 1939 section 3: keyword of 3-4 characters, arguments separated by single spaces).
func parseCommand(line string) (string, []string, error) {
	if line == "" {
		return "", nil, errors.New("empty command")
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", nil, errors.New("control character in command")
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return "", nil, errors.New("empty command")
	}
	cmd := strings.ToUpper(fields[0])
	if len(cmd) < 3 || len(cmd) > 4 {
		return "", nil, fmt.Errorf("unknown command %q", truncate(fields[0]))
	}
	if len(fields) > 3 {
		return "", nil, errors.New("too many arguments")
	}
	return cmd, fields[1:], nil
}

// truncate shortens text quoted back to the client.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// reply writes a single-line status response.
func (ss *session) reply(ok bool, format string, args ...any) {
	if ok {
		ss.bw.WriteString("+OK ")
	} else {
		ss.bw.WriteString("-ERR ")
	}
	fmt.Fprintf(ss.bw, format, args...)
	ss.bw.WriteString("\r\n")
}

// flush sends buffered responses unless more pipelined commands are already waiting.
func (ss *session) flush() bool {
	if ss.br.Buffered() > 0 && ss.bw.Buffered() < 16<<10 {
		return true
	}
	_ = ss.conn.SetWriteDeadline(time.Now().Add(ss.s.opts.IdleTimeout))
	return ss.bw.Flush() == nil
}

// dispatch runs one command; it reports whether the session ends.
func (ss *session) dispatch(cmd string, args []string) bool {
	switch cmd {
	case "QUIT":
		return ss.quit()
	case "CAPA":
		ss.capa()
		return false
	case "NOOP", "STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL":
		if ss.state != stateTransaction {
			ss.reply(false, "%s is only valid after login", cmd)
			return false
		}
		ss.transaction(cmd, args)
		return false
	case "USER", "PASS", "APOP", "STLS", "AUTH":
		if ss.state != stateAuth {
			ss.reply(false, "already logged in")
			return false
		}
		return ss.authorization(cmd, args)
	}
	ss.reply(false, "unknown command %q", truncate(cmd))
	return false
}

// capa lists capabilities (RFC 2449).
func (ss *session) capa() {
	ss.reply(true, "Capability list follows")
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION Outpost"}
	if ss.state == stateAuth && ss.loginAllowed() {
		caps = append(caps, "USER")
	}
	if ss.state == stateAuth && ss.s.opts.TLS != nil && !ss.tls {
		caps = append(caps, "STLS")
	}
	for _, c := range caps {
		ss.bw.WriteString(c + "\r\n")
	}
	ss.bw.WriteString(".\r\n")
}

// loginAllowed reports whether USER/PASS may be used on this connection: over TLS, or from a
// loopback client when AllowInsecureAuth (otherwise CAPA hides USER and USER gets -ERR [AUTH]).
func (ss *session) loginAllowed() bool {
	remote := ss.conn.RemoteAddr()
	return mailstore.PlaintextAuthAllowed(remote, ss.tls, ss.s.opts.AllowInsecureAuth && ss.s.opts.isLocal(remote))
}

// authorization handles the AUTHORIZATION state's commands.
func (ss *session) authorization(cmd string, args []string) bool {
	switch cmd {
	case "STLS":
		ss.startTLS()
		return false
	case "APOP":
		ss.reply(false, "[AUTH] APOP is not available: passwords are stored as bcrypt hashes; use USER/PASS")
		return false
	case "AUTH":
		ss.reply(false, "no SASL mechanisms offered; use USER/PASS")
		return false
	case "USER":
		if !ss.loginAllowed() {
			ss.reply(false, "[AUTH] plaintext login is disabled here; use STLS first")
			return false
		}
		if len(args) != 1 {
			ss.reply(false, "USER needs one argument")
			return false
		}
		ss.userArg = args[0]
		ss.reply(true, "send PASS")
		return false
	}
	return ss.pass(args)
}

// pass completes USER/PASS: check the password, lock the maildrop, snapshot it.
func (ss *session) pass(args []string) bool {
	if ss.userArg == "" {
		ss.reply(false, "USER first")
		return false
	}
	login := ss.userArg
	ss.userArg = ""
	if len(args) == 0 {
		ss.reply(false, "PASS needs an argument")
		return false
	}
	u, err := ss.s.store.Directory().Authenticate(login, strings.Join(args, " "))
	if err != nil {
		ss.authFails++
		ss.s.m.authFailures.Inc()
		if ss.authFails >= ss.s.opts.MaxAuthFailures {
			ss.reply(false, "[AUTH] too many authentication failures, closing connection")
			return true
		}
		ss.reply(false, "[AUTH] invalid user name or password")
		return false
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.opts.LockWait)
	unlock, ok := ss.s.store.Lock(ctx, u)
	cancel()
	if !ok {
		ss.reply(false, "[IN-USE] maildrop is locked by another session")
		return false
	}
	if err := ss.open(u); err != nil {
		unlock()
		ss.s.log.Error("pop3: open maildrop", "user", u.Address, "err", err)
		ss.reply(false, "[SYS/TEMP] cannot open maildrop")
		return false
	}
	ss.user, ss.unlock, ss.state = u, unlock, stateTransaction
	ss.reply(true, "%s has %d messages (%d octets)", u.Address, len(ss.msgs), ss.total())
	return false
}

// open snapshots the user's INBOX: the message numbers are fixed for the session.
func (ss *session) open(u *mailstore.User) error {
	box, err := ss.s.store.Mailbox(u, mailstore.Inbox)
	if err != nil {
		return err
	}
	snap, err := box.Scan()
	if err != nil {
		return err
	}
	ss.box, ss.validity, ss.msgs = box, snap.UIDValidity, snap.Messages
	ss.deleted = make([]bool, len(ss.msgs))
	return nil
}

// startTLS upgrades the connection (RFC 2595 STLS).
func (ss *session) startTLS() {
	if ss.s.opts.TLS == nil || ss.tls {
		ss.reply(false, "STLS not available")
		return
	}
	ss.reply(true, "begin TLS negotiation")
	if !ss.flush() {
		return
	}
	tc := tls.Server(ss.conn, ss.s.opts.TLS)
	_ = tc.SetDeadline(time.Now().Add(ss.s.opts.IdleTimeout))
	if err := tc.Handshake(); err != nil {
		ss.conn.Close()
		return
	}
	ss.conn, ss.tls = tc, true
	ss.br.Reset(tc)
	ss.bw.Reset(tc)
}

// quit ends the session; in TRANSACTION it enters UPDATE and removes the deleted messages.
func (ss *session) quit() bool {
	if ss.state != stateTransaction {
		ss.reply(true, "Outpost POP3 server signing off")
		return true
	}
	var keys []string
	for i, d := range ss.deleted {
		if d {
			keys = append(keys, ss.msgs[i].Key)
		}
	}
	err := ss.box.Remove(keys)
	// The UPDATE state is over: release the maildrop before the reply goes out, so a client that
	// reconnects the moment it reads +OK finds the maildrop free (RFC 1939 §6).
	ss.unlock()
	ss.unlock = nil
	if err != nil {
		ss.s.log.Error("pop3: update", "user", ss.user.Address, "err", err)
		ss.reply(false, "[SYS/TEMP] some deleted messages not removed")
		return true
	}
	ss.s.m.deleted.Add(float64(len(keys)))
	ss.reply(true, "Outpost POP3 server signing off (%d messages deleted, %d left)", len(keys), len(ss.msgs)-len(keys))
	return true
}

// total is the size of the messages not marked deleted.
func (ss *session) total() int64 {
	var n int64
	for i, m := range ss.msgs {
		if !ss.deleted[i] {
			n += m.Size
		}
	}
	return n
}

// transaction handles the TRANSACTION state's commands.
func (ss *session) transaction(cmd string, args []string) {
	switch cmd {
	case "NOOP":
		ss.reply(true, "")
	case "STAT":
		ss.reply(true, "%d %d", ss.count(), ss.total())
	case "RSET":
		for i := range ss.deleted {
			ss.deleted[i] = false
		}
		ss.reply(true, "maildrop has %d messages (%d octets)", ss.count(), ss.total())
	case "LIST", "UIDL":
		ss.listing(cmd, args)
	case "DELE":
		if i, ok := ss.message(args, 1); ok {
			ss.deleted[i] = true
			ss.reply(true, "message %d deleted", i+1)
		}
	case "RETR":
		if i, ok := ss.message(args, 1); ok {
			ss.send(i, -1)
		}
	case "TOP":
		if i, ok := ss.message(args, 2); ok {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				ss.reply(false, "invalid line count %q", truncate(args[1]))
				return
			}
			ss.send(i, n)
		}
	}
}

// count is the number of messages not marked deleted.
func (ss *session) count() int {
	n := 0
	for _, d := range ss.deleted {
		if !d {
			n++
		}
	}
	return n
}

// message parses a message-number argument (with want arguments in total) and checks that the
// message exists and is not deleted.
func (ss *session) message(args []string, want int) (int, bool) {
	if len(args) != want {
		ss.reply(false, "wrong number of arguments")
		return 0, false
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > len(ss.msgs) {
		ss.reply(false, "no such message")
		return 0, false
	}
	if ss.deleted[n-1] {
		ss.reply(false, "message %d already deleted", n)
		return 0, false
	}
	return n - 1, true
}

// uidl is a message's persistent unique id: UIDVALIDITY and UID of the shared store.
func (ss *session) uidl(i int) string { return fmt.Sprintf("%d.%d", ss.validity, ss.msgs[i].UID) }

// listing answers LIST and UIDL, for one message or all.
func (ss *session) listing(cmd string, args []string) {
	item := func(i int) string {
		if cmd == "LIST" {
			return fmt.Sprintf("%d %d", i+1, ss.msgs[i].Size)
		}
		return fmt.Sprintf("%d %s", i+1, ss.uidl(i))
	}
	if len(args) > 0 {
		if i, ok := ss.message(args, 1); ok {
			ss.reply(true, "%s", item(i))
		}
		return
	}
	ss.reply(true, "%d messages (%d octets)", ss.count(), ss.total())
	for i := range ss.msgs {
		if !ss.deleted[i] {
			ss.bw.WriteString(item(i) + "\r\n")
		}
	}
	ss.bw.WriteString(".\r\n")
}

// send answers RETR (lines < 0) or TOP: the message byte-stuffed, ending with ".".
func (ss *session) send(i, lines int) {
	data, err := ss.box.ReadAll(ss.msgs[i].Key, maxMessage)
	if err != nil {
		ss.reply(false, "[SYS/TEMP] message %d is no longer available", i+1)
		return
	}
	if lines >= 0 {
		data = top(data, lines)
	}
	ss.reply(true, "%d octets", len(data))
	writeStuffed(ss.bw, data)
	if lines < 0 {
		ss.s.m.retrieved.Inc()
		ss.markSeen(i)
	}
}

// markSeen sets the Maildir S flag after RETR, so IMAP shows the message as read.
func (ss *session) markSeen(i int) {
	if strings.Contains(ss.msgs[i].Flags, "S") {
		return
	}
	if f, err := ss.box.SetFlags(ss.msgs[i].Key, ss.msgs[i].Flags+"S"); err == nil {
		ss.msgs[i].Flags = f
	}
}

// top returns the header, the blank line and the first n body lines of a message.
func top(data []byte, n int) []byte {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return data
	}
	pos := end + 4
	for ; n > 0 && pos < len(data); n-- {
		nl := bytes.IndexByte(data[pos:], '\n')
		if nl < 0 {
			pos = len(data)
			break
		}
		pos += nl + 1
	}
	return data[:pos]
}

// writeStuffed writes a multi-line response body: lines starting with "." get another "."
// (RFC 1939 section 3), the body ends with CRLF and the terminating ".".
func writeStuffed(w io.Writer, data []byte) {
	bw := bufio.NewWriter(w)
	for len(data) > 0 {
		line := data
		if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
			line = data[:nl+1]
		}
		data = data[len(line):]
		if line[0] == '.' {
			bw.WriteByte('.')
		}
		body := bytes.TrimRight(line, "\r\n")
		bw.Write(body)
		bw.WriteString("\r\n")
	}
	bw.WriteString(".\r\n")
	bw.Flush()
}
