package smtp

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// maxHops is the Received-header count beyond which a message is taken for a loop (RFC 5321
// 6.3 suggests at least 100 is plenty; Postfix uses 50).
const maxHops = 50

// Replies with their RFC 5321 codes and RFC 3463 enhanced codes.
var (
	errNoSuchUser  = func(a string) error { return smtpErr(550, 5, 1, 1, "<"+a+">: no such user here") }
	errRelayDenied = func(a string) error { return smtpErr(554, 5, 7, 1, "<"+a+">: relay access denied") }
	errNotLocal    = func(a, d string) error {
		return smtpErr(551, 5, 7, 1, "<"+a+">: user not local; please try the mail exchanger of "+d)
	}
	errBadAddress = func(a string) error { return smtpErr(553, 5, 1, 3, "<"+a+">: bad address syntax") }
	errNotOwner   = func(a, login string) error {
		return smtpErr(553, 5, 7, 1, "<"+a+">: Sender address rejected: not owned by user "+login)
	}
	errAuthInvalid  = smtpErr(535, 5, 7, 8, "Authentication credentials invalid")
	errAuthNeedsTLS = smtpErr(538, 5, 7, 11, "Encryption required for requested authentication mechanism")
	errAuthTooMany  = smtpErr(421, 4, 7, 0, "Too many authentication failures, closing connection")
	errSizeExceeded = smtpErr(552, 5, 3, 4, "Message size exceeds fixed maximum message size")
	errLoop         = smtpErr(554, 5, 4, 6, "Too many Received headers: mail loop detected")
	errQueue        = smtpErr(451, 4, 3, 0, "Local error in processing: message not queued, try again later")
	// errNoStorage is RFC 5321's 452 with RFC 3463's 4.3.1 "mail system full": at RCPT when
	// the queue's disk is (nearly) full, at MAIL for a SIZE= that does not fit (RFC 1870),
	// after DATA when the message could not be written.
	errNoStorage = smtpErr(452, 4, 3, 1, "Insufficient system storage: message not queued, try again later")
)

// smtpErr builds a go-smtp reply error.
func smtpErr(code, a, b, c int, msg string) *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.EnhancedCode{a, b, c}, Message: msg}
}

// session is one SMTP connection's state; go-smtp calls one method per command.
type session struct {
	s         *Server
	conn      *gosmtp.Conn
	user      *mailstore.User
	loginName string // the name the user logged in with (for replies and logs)
	authFails int
	from      string
	size      int64 // the SIZE= the client declared at MAIL (0: none)
	rcpts     []*Recipient
}

// newSession starts a session after EHLO/HELO.
func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	s.q.metric(func(m *metrics) { m.sessions.Inc() })
	return &session{s: s, conn: c}, nil
}

// Reset discards the current transaction (RSET, EHLO, after DATA).
func (ss *session) Reset() { ss.from, ss.size, ss.rcpts = "", 0, nil }

// Logout ends the session.
func (ss *session) Logout() error { return nil }

// AuthMechanisms lists SASL mechanisms offered in EHLO: none (no AUTH keyword) until
// plaintext passwords are acceptable on this connection.
func (ss *session) AuthMechanisms() []string {
	if !ss.plainAuthAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// plainAuthAllowed: PLAIN and LOGIN need TLS, or a loopback client and AllowInsecureAuth.
func (ss *session) plainAuthAllowed() bool {
	_, isTLS := ss.conn.TLSConnectionState()
	remote := ss.conn.Conn().RemoteAddr()
	return mailstore.PlaintextAuthAllowed(remote, isTLS, ss.s.opts.AllowInsecureAuth && ss.s.isLocal(remote))
}

// Auth starts a SASL exchange for PLAIN or LOGIN (538 5.7.11 without TLS when not allowed,
// RFC 4954 6).
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.plainAuthAllowed() {
		return nil, errAuthNeedsTLS
	}
	if ss.authFails >= ss.s.opts.MaxAuthFailures {
		ss.hangUp()
		return nil, errAuthTooMany
	}
	check := func(login, password string) error { return ss.login(login, password) }
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return ss.fail()
			}
			return check(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: check}, nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

// login checks credentials and counts failures.
func (ss *session) login(login, password string) error {
	u, err := ss.s.q.store.Directory().Authenticate(login, password)
	if err != nil {
		return ss.fail()
	}
	ss.user, ss.loginName = u, login
	ss.s.log.Info("authenticated", "user", u.Address, "remote", ss.conn.Conn().RemoteAddr().String())
	return nil
}

// fail counts an authentication failure; past the limit the connection is closed with 421.
func (ss *session) fail() error {
	ss.authFails++
	ss.s.q.metric(func(m *metrics) { m.authFailures.Inc() })
	if ss.authFails >= ss.s.opts.MaxAuthFailures {
		ss.hangUp()
		return errAuthTooMany
	}
	return errAuthInvalid
}

// hangUp makes the next read see end of input, so the connection closes after the reply.
func (ss *session) hangUp() {
	c := ss.conn.Conn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if hc, ok := c.(*hangupConn); ok {
		hc.hangup.Store(true)
	}
}

// hangupConn is an accepted connection whose reads can be ended from the session.
type hangupConn struct {
	net.Conn
	hangup atomic.Bool
}

// Read reads from the connection, or reports end of input once hung up.
func (c *hangupConn) Read(p []byte) (int, error) {
	if c.hangup.Load() {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// hangupListener wraps accepted connections in hangupConn.
type hangupListener struct{ net.Listener }

// Accept accepts and wraps a connection.
func (l hangupListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &hangupConn{Conn: c}, nil
}

// Mail starts a transaction (MAIL FROM). An authenticated user may only use their own address
// (unless HostOptions.AllowSenderLoginMismatch); the null sender stays allowed, as in Postfix,
// because bounces, DSNs and MDNs a user's client sends legitimately use it.
func (ss *session) Mail(from string, opts *gosmtp.MailOptions) error {
	ss.Reset()
	if from != "" && !validAddress(from) {
		return errBadAddress(from)
	}
	if ss.user != nil && from != "" && !ss.s.opts.AllowSenderLoginMismatch && !strings.EqualFold(from, ss.user.Address) {
		ss.reject()
		return errNotOwner(from, ss.loginName)
	}
	if opts != nil && opts.Size > 0 && ss.s.opts.MaxMessageSize > 0 && opts.Size > ss.s.opts.MaxMessageSize {
		return errSizeExceeded
	}
	if opts != nil && opts.Size > 0 && !ss.s.q.roomFor(opts.Size) {
		return errNoStorage // RFC 1870 6.1: a SIZE that does not fit for now is 452 at MAIL
	}
	ss.from = from
	if opts != nil {
		ss.size = opts.Size
	}
	return nil
}

// Rcpt adds a recipient: local users of this host, or anyone when relaying is allowed.
func (ss *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if !validAddress(to) {
		return errBadAddress(to)
	}
	addr := canonicalAddress(to)
	_, domain, _ := strings.Cut(addr, "@")
	r := &Recipient{Addr: addr, State: StateQueued}
	switch {
	case ss.s.local[domain]:
		if _, ok := ss.s.q.store.Directory().Lookup(addr); !ok {
			ss.reject()
			return errNoSuchUser(to)
		}
		r.Local = true
	case ss.user != nil || ss.s.relayAllowed(ss.conn.Conn().RemoteAddr()):
	case ss.s.other[domain]:
		ss.reject()
		return errNotLocal(to, domain)
	default:
		ss.reject()
		return errRelayDenied(to)
	}
	for _, x := range ss.rcpts {
		if x.Addr == r.Addr {
			return nil // duplicate: accepted, delivered once
		}
	}
	if !ss.s.q.roomFor(ss.size) {
		ss.s.log.Warn("queue disk full: recipient deferred", "rcpt", addr, "size", ss.size)
		return errNoStorage
	}
	ss.rcpts = append(ss.rcpts, r)
	return nil
}

// reject counts a refused recipient.
func (ss *session) reject() { ss.s.q.metric(func(m *metrics) { m.rejected.Inc() }) }

// validAddress checks a mailbox (local@domain) loosely, as MTAs do: one @, no spaces or
// controls, a dotted-or-plain domain.
func validAddress(a string) bool {
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || len(a) > 320 || strings.Contains(domain, "@") {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '\\' && i > len(local) {
			return false
		}
	}
	return !strings.ContainsAny(domain, "/\\\"(),:;")
}

// canonicalAddress lowercases the domain (local parts are case-sensitive in principle, but our
// users are matched case-insensitively anyway, as every mature MTA does).
func canonicalAddress(a string) string { return strings.ToLower(a) }

// Data receives the message into the queue, durably, before the 250 reply.
func (ss *session) Data(r io.Reader) error {
	sp, err := ss.s.q.NewSpool()
	if err != nil {
		return ss.notQueued("cannot spool", err)
	}
	if _, err := io.WriteString(sp, ss.received(sp.ID)); err != nil {
		sp.Abort()
		return ss.notQueued("cannot spool", err)
	}
	hops, err := copyNormalized(sp, r)
	if err != nil {
		sp.Abort()
		var se *gosmtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return ss.notQueued("cannot spool", err)
	}
	if hops > maxHops {
		sp.Abort()
		return errLoop
	}
	now := ss.s.q.opts.Now()
	for _, rc := range ss.rcpts {
		rc.Next = now
	}
	id, n, size := sp.ID, len(ss.rcpts), sp.size
	// After Commit the envelope belongs to the queue's workers: do not touch it here.
	if err := sp.Commit(&Envelope{From: ss.from, Host: ss.s.opts.Hostname, Arrived: now, Rcpts: ss.rcpts}); err != nil {
		return ss.notQueued("cannot queue", err)
	}
	ss.rcpts = nil
	ss.s.log.Info("queued", "id", id, "from", ss.from, "rcpts", n, "size", size)
	ss.s.q.metric(func(m *metrics) { m.accepted.Inc() })
	return smtpErr(250, 2, 0, 0, "OK: queued as "+id)
}

// notQueued logs why a message could not be made durable and picks the reply: 452 4.3.1
// when the disk is full, 451 4.3.0 for any other local error. Nothing of it stays queued.
func (ss *session) notQueued(what string, err error) error {
	ss.s.log.Error(what, "err", err)
	if diskspace.IsFull(err) {
		return errNoStorage
	}
	return errQueue
}

// received renders our Received trace header (RFC 5321 4.4).
func (ss *session) received(id string) string {
	proto := "ESMTP"
	if _, ok := ss.conn.TLSConnectionState(); ok {
		proto += "S"
	}
	if ss.user != nil {
		proto += "A"
	}
	ip := ss.conn.Conn().RemoteAddr().String()
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	helo := strings.Map(func(r rune) rune {
		if r <= ' ' || r == '(' || r == ')' || r == ';' || r > 0x7e {
			return '_'
		}
		return r
	}, ss.conn.Hostname())
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Outpost) with %s id %s", helo, ip, ss.s.opts.Hostname, proto, id)
	if len(ss.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", ss.rcpts[0].Addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", ss.s.q.opts.Now().Format(time.RFC1123Z))
	return b.String()
}

// copyNormalized copies a message, turning bare LF line ends into CRLF, and counts the
// Received headers of its header section.
func copyNormalized(dst io.Writer, src io.Reader) (hops int, err error) {
	br := bufio.NewReaderSize(src, 32<<10)
	bw := bufio.NewWriterSize(dst, 64<<10)
	inHeader, lineStart := true, true
	for {
		line, rerr := br.ReadSlice('\n')
		full := len(line) > 0 && line[len(line)-1] == '\n'
		if inHeader && lineStart && len(line) > 0 {
			trimmed := bytes.TrimRight(line, "\r\n")
			if len(trimmed) == 0 {
				inHeader = false
			} else if len(trimmed) >= 9 && strings.EqualFold(string(trimmed[:9]), "received:") {
				hops++
			}
		}
		if full {
			body := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			bw.Write(body)
			bw.WriteString("\r\n")
		} else {
			bw.Write(line)
		}
		lineStart = full
		if rerr == bufio.ErrBufferFull {
			continue
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return hops, rerr
		}
	}
	return hops, bw.Flush()
}

// loginServer is the server side of the LOGIN SASL mechanism (draft-murchison-sasl-login).
type loginServer struct {
	step int
	user string
	auth func(user, pass string) error
}

// Next handles one client response.
func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if resp != nil {
			l.user, l.step = string(resp), 2
			return []byte("Password:"), false, nil
		}
		l.step = 1
		return []byte("Username:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.user, string(resp))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}
