package pop3

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	gopop3 "github.com/knadh/go-pop3"
	"github.com/outpost-proxy/outpost/internal/componenttest"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/outpost-proxy/outpost/origin/mailstore/mailstoretest"
)

// testServer starts a POP3 server over a store where alice has the given messages.
func testServer(t testing.TB, msgs ...string) (*Server, *mailstore.Store) {
	t.Helper()
	return testServerWith(t, func(*Options) {}, msgs...)
}

// testServerWith is testServer with adjusted options.
func testServerWith(t testing.TB, adjust func(*Options), msgs ...string) (*Server, *mailstore.Store) {
	t.Helper()
	store, _ := mailstoretest.New(t, msgs...)
	return startServer(t, store, adjust), store
}

// startServer runs a server over store with the test options, adjusted.
func startServer(t testing.TB, store *mailstore.Store, adjust func(*Options)) *Server {
	t.Helper()
	opts := Options{Listen: "127.0.0.1:0", AllowInsecureAuth: true, MaxAuthFailures: 3, IdleTimeout: time.Minute}
	adjust(&opts)
	s, err := New(opts, store)
	if err != nil {
		t.Fatal(err)
	}
	componenttest.Start(t, s)
	return s
}

// client is a raw POP3 connection.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// dial connects and reads the greeting.
func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

// line reads one response line.
func (cl *client) line() string {
	cl.t.Helper()
	l, err := cl.br.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns the status line.
func (cl *client) cmd(line string) string {
	cl.t.Helper()
	fmt.Fprintf(cl.c, "%s\r\n", line)
	return cl.line()
}

// multi reads a multi-line body up to the terminating ".", undoing byte-stuffing.
func (cl *client) multi() []string {
	cl.t.Helper()
	var out []string
	for {
		l := cl.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

// login authenticates as alice.
func (cl *client) login() {
	cl.t.Helper()
	if r := cl.cmd("USER alice"); !strings.HasPrefix(r, "+OK") {
		cl.t.Fatal(r)
	}
	if r := cl.cmd("PASS wonderland"); !strings.HasPrefix(r, "+OK") {
		cl.t.Fatal(r)
	}
}

const (
	msg1 = "Subject: one\r\n\r\nfirst\r\n.dotted line\r\n"
	msg2 = "Subject: two\r\nX-A: b\r\n\r\nl1\r\nl2\r\nl3\r\n"
)

// TestCommands walks the RFC 1939 commands over one session, with their replies.
func TestCommands(t *testing.T) {
	s, _ := testServer(t, msg1, msg2)
	cl := dial(t, s.Addr())
	for _, tc := range []struct {
		name, send, want string
		body             []string
	}{
		{"STAT before login", "STAT", "-ERR", nil},
		{"PASS before USER", "PASS x", "-ERR", nil},
		{"CAPA", "CAPA", "+OK", []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION Outpost", "USER"}},
		{"USER", "USER alice@outpost.test", "+OK", nil},
		{"PASS", "PASS wonderland", "+OK alice@outpost.test has 2 messages", nil},
		{"STAT", "STAT", fmt.Sprintf("+OK 2 %d", len(msg1)+len(msg2)), nil},
		{"LIST", "LIST", "+OK 2 messages", []string{fmt.Sprintf("1 %d", len(msg1)), fmt.Sprintf("2 %d", len(msg2))}},
		{"LIST one", "LIST 2", fmt.Sprintf("+OK 2 %d", len(msg2)), nil},
		{"LIST missing", "LIST 3", "-ERR no such message", nil},
		{"LIST junk", "LIST x", "-ERR no such message", nil},
		{"RETR dot-stuffed", "RETR 1", "+OK", []string{"Subject: one", "", "first", ".dotted line"}},
		{"TOP 1 line", "TOP 2 1", "+OK", []string{"Subject: two", "X-A: b", "", "l1"}},
		{"TOP bad count", "TOP 2 -1", "-ERR", nil},
		{"DELE", "DELE 1", "+OK message 1 deleted", nil},
		{"DELE twice", "DELE 1", "-ERR message 1 already deleted", nil},
		{"RETR deleted", "RETR 1", "-ERR", nil},
		{"STAT after DELE", "STAT", fmt.Sprintf("+OK 1 %d", len(msg2)), nil},
		{"RSET", "RSET", "+OK maildrop has 2 messages", nil},
		{"NOOP", "NOOP", "+OK", nil},
		{"unknown", "XYZZY", "-ERR", nil},
		{"USER after login", "USER bob", "-ERR already logged in", nil},
		{"APOP not offered", "APOP", "-ERR", nil},
	} {
		got := cl.cmd(tc.send)
		if !strings.HasPrefix(got, tc.want) {
			t.Fatalf("%s: %q -> %q, want prefix %q", tc.name, tc.send, got, tc.want)
		}
		if tc.body != nil && strings.HasPrefix(got, "+OK") {
			if body := cl.multi(); strings.Join(body, "|") != strings.Join(tc.body, "|") {
				t.Fatalf("%s: body %q, want %q", tc.name, body, tc.body)
			}
		}
	}
}

// TestDeletionsOnlyAtQuit: a dropped connection deletes nothing; QUIT applies deletions.
func TestDeletionsOnlyAtQuit(t *testing.T) {
	s, _ := testServer(t, msg1, msg2)
	cl := dial(t, s.Addr())
	cl.login()
	cl.cmd("DELE 1")
	cl.cmd("DELE 2")
	cl.c.Close() // dropped: no UPDATE state
	cl = dial(t, s.Addr())
	cl.login() // waits (LockWait) for the dropped session to release the maildrop lock
	if got := cl.cmd("STAT"); !strings.HasPrefix(got, "+OK 2 ") {
		t.Fatalf("after a dropped connection STAT = %q, want 2 messages", got)
	}
	cl.cmd("DELE 1")
	if got := cl.cmd("QUIT"); !strings.HasPrefix(got, "+OK") || !strings.Contains(got, "1 messages deleted") {
		t.Fatalf("QUIT = %q", got)
	}
	cl = dial(t, s.Addr())
	cl.login()
	if got := cl.cmd("STAT"); got != fmt.Sprintf("+OK 1 %d", len(msg2)) {
		t.Fatalf("after QUIT STAT = %q", got)
	}
}

// TestUIDLStable: UIDL values persist across sessions and do not shift when others are deleted.
func TestUIDLStable(t *testing.T) {
	s, _ := testServer(t, msg1, msg2)
	uidls := func(del bool) []string {
		cl := dial(t, s.Addr())
		cl.login()
		if !strings.HasPrefix(cl.cmd("UIDL"), "+OK") {
			t.Fatal("UIDL failed")
		}
		var out []string
		for _, l := range cl.multi() {
			out = append(out, strings.Fields(l)[1])
		}
		if del {
			cl.cmd("DELE 1")
		}
		cl.cmd("QUIT")
		return out
	}
	first := uidls(false)
	second := uidls(true)
	third := uidls(false)
	if len(first) != 2 || strings.Join(first, ",") != strings.Join(second, ",") {
		t.Fatalf("UIDL changed between sessions: %v vs %v", first, second)
	}
	if len(third) != 1 || third[0] != first[1] {
		t.Fatalf("after deleting message 1, UIDL = %v, want [%s]", third, first[1])
	}
	for _, u := range first {
		if len(u) > 70 {
			t.Fatalf("UIDL %q longer than 70 octets (RFC 1939 7)", u)
		}
	}
}

// TestExclusiveLock: a second session for the same maildrop is refused with [IN-USE] once
// the lock wait is over.
func TestExclusiveLock(t *testing.T) {
	s, _ := testServerWith(t, func(o *Options) { o.LockWait = 50 * time.Millisecond }, msg1)
	a := dial(t, s.Addr())
	a.login()
	b := dial(t, s.Addr())
	b.cmd("USER alice")
	if got := b.cmd("PASS wonderland"); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Fatalf("second session PASS = %q", got)
	}
	a.cmd("QUIT")
	b.cmd("USER alice")
	if got := b.cmd("PASS wonderland"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("after the first QUIT, PASS = %q", got)
	}
}

// TestLimits: failed logins close the connection; over-long lines are refused.
func TestLimits(t *testing.T) {
	s, _ := testServer(t)
	cl := dial(t, s.Addr())
	for i := range 3 {
		cl.cmd("USER alice")
		got := cl.cmd("PASS nope")
		if !strings.HasPrefix(got, "-ERR [AUTH]") {
			t.Fatalf("attempt %d: %q", i+1, got)
		}
	}
	if _, err := cl.br.ReadString('\n'); err != io.EOF {
		t.Fatalf("connection open after too many failures: %v", err)
	}
	cl = dial(t, s.Addr())
	if got := cl.cmd("USER " + strings.Repeat("a", 1000)); got != "-ERR command line too long" {
		t.Fatalf("long line: %q", got)
	}
}

// TestGoPop3Client: an independent Go POP3 client (knadh/go-pop3) lists, reads and deletes.
func TestGoPop3Client(t *testing.T) {
	s, store := testServer(t, msg1, msg2)
	host, port, _ := net.SplitHostPort(s.Addr())
	p, _ := strconv.Atoi(port)
	c, err := gopop3.New(gopop3.Opt{Host: host, Port: p}).NewConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth("alice", "wonderland"); err != nil {
		t.Fatal(err)
	}
	count, size, err := c.Stat()
	if err != nil || count != 2 || size != len(msg1)+len(msg2) {
		t.Fatalf("Stat = %d %d %v", count, size, err)
	}
	raw, err := c.RetrRaw(2)
	if err != nil || !strings.Contains(raw.String(), "Subject: two") {
		t.Fatalf("RetrRaw = %q, %v", raw, err)
	}
	if err := c.Dele(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	alice, _ := store.Directory().Lookup("alice@outpost.test")
	box, _ := store.Mailbox(alice, mailstore.Inbox)
	snap, _ := box.Scan()
	if len(snap.Messages) != 1 || snap.Messages[0].Key != "m1" || !strings.Contains(snap.Messages[0].Flags, "S") {
		t.Fatalf("after QUIT: %+v, want only m1, marked seen by RETR", snap.Messages)
	}
}

// FuzzParseCommand: the command parser never panics and returns upper-case keywords only.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "top 1 2", "", " ", "LIST\t1", "\x00\x01", "RETR 1 2 3 4", "ÿÿÿÿ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, args, err := parseCommand(line)
		if err == nil && (cmd != strings.ToUpper(cmd) || len(args) > 2) {
			t.Fatalf("%q -> %q %q", line, cmd, args)
		}
	})
}

// FuzzSession: arbitrary input to a live server gets answers, never a crash or a hang.
func FuzzSession(f *testing.F) {
	for _, s := range []string{"USER alice\r\nPASS wonderland\r\nLIST\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n", "CAPA\r\nSTLS\r\nAUTH\r\n", "\r\n\r\n"} {
		f.Add([]byte(s))
	}
	s, _ := testServer(f, msg1)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(in)
		c.Write([]byte("\r\nRSET\r\nQUIT\r\n")) // never delete in fuzzing
		_ = c.(*net.TCPConn).CloseWrite()
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("greeting %q %v", line, err)
		}
	})
}

// TestInsecureLoginLoopbackOnly: allow_insecure_auth covers loopback clients only; for a client
// that is not on loopback CAPA hides USER and USER gets -ERR [AUTH] before STLS.
func TestInsecureLoginLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		remote   bool
		wantUser bool
		want     string
	}{
		{"loopback client", false, true, "+OK"},
		{"non-loopback client", true, false, "-ERR [AUTH]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := testServerWith(t, func(o *Options) {
				if tc.remote {
					o.isLocal = func(net.Addr) bool { return false }
				}
			})
			cl := dial(t, s.Addr())
			if r := cl.cmd("CAPA"); !strings.HasPrefix(r, "+OK") {
				t.Fatalf("CAPA: %q", r)
			}
			user := false
			for _, c := range cl.multi() {
				user = user || c == "USER"
			}
			if user != tc.wantUser {
				t.Fatalf("CAPA lists USER = %v, want %v", user, tc.wantUser)
			}
			if r := cl.cmd("USER alice"); !strings.HasPrefix(r, tc.want) {
				t.Fatalf("USER: %q, want %q", r, tc.want)
			}
		})
	}
}
