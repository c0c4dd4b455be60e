package imap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/componenttest"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/outpost-proxy/outpost/origin/mailstore/mailstoretest"
)

// testServer starts an IMAP server over a store where alice has the given INBOX messages.
func testServer(t testing.TB, msgs ...string) (*Server, *mailstore.Store, *mailstore.User) {
	t.Helper()
	return testServerWith(t, func(*Options) {}, msgs...)
}

// testServerWith is testServer with adjusted options.
func testServerWith(t testing.TB, adjust func(*Options), msgs ...string) (*Server, *mailstore.Store, *mailstore.User) {
	t.Helper()
	store, alice := mailstoretest.New(t, msgs...)
	return startServer(t, store, adjust), store, alice
}

// startServer runs a server over store with the test options, adjusted.
func startServer(t testing.TB, store *mailstore.Store, adjust func(*Options)) *Server {
	t.Helper()
	opts := Options{Listen: "127.0.0.1:0", AllowInsecureAuth: true, MaxAuthFailures: 3, MaxMessageSize: 1 << 20}
	adjust(&opts)
	s, err := New(opts, store)
	if err != nil {
		t.Fatal(err)
	}
	componenttest.Start(t, s)
	return s
}

// client is a raw IMAP connection.
type client struct {
	t   testing.TB
	c   net.Conn
	br  *bufio.Reader
	tag int
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
	if g := cl.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

// line reads one line, appending any literal it announces.
func (cl *client) line() string {
	cl.t.Helper()
	l, err := cl.br.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read: %v (partial %q)", err, l)
	}
	l = strings.TrimRight(l, "\r\n")
	if m := literalRe.FindStringSubmatch(l); m != nil {
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(cl.br, buf); err != nil {
			cl.t.Fatal(err)
		}
		return l + "\n" + string(buf) + cl.line()
	}
	return l
}

var literalRe = regexp.MustCompile(`\{(\d+)\}$`)

// do sends a tagged command and returns the untagged lines and the tagged status line.
func (cl *client) do(cmd string) ([]string, string) {
	cl.t.Helper()
	cl.tag++
	tag := fmt.Sprintf("a%d", cl.tag)
	fmt.Fprintf(cl.c, "%s %s\r\n", tag, cmd)
	var untagged []string
	for {
		l := cl.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed and returns its untagged responses joined.
func (cl *client) ok(cmd string) string {
	cl.t.Helper()
	u, st := cl.do(cmd)
	if !strings.HasPrefix(st, "OK") {
		cl.t.Fatalf("%s: %s (untagged %q)", cmd, st, u)
	}
	return strings.Join(u, "\n")
}

const (
	plain = "From: Bob <bob@outpost.test>\r\nTo: alice@outpost.test\r\nSubject: plain one\r\nDate: Mon, 02 Jan 2026 10:00:00 +0000\r\n\r\nhello alice\r\n"
	multi = "From: bob@outpost.test\r\nSubject: with attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XX--\r\n"
)

// TestCommands walks the IMAP4rev1 core over one session.
func TestCommands(t *testing.T) {
	s, _, _ := testServer(t, plain, multi)
	cl := dial(t, s.Addr())
	for _, tc := range []struct{ cmd, want string }{
		{"CAPABILITY", "IMAP4rev1"},
		{"LOGIN alice wonderland", ""},
		{"CAPABILITY", "IDLE"},
		{"CREATE Archive", ""},
		{"CREATE Archive.2026", ""},
		{`LIST "" "*"`, `* LIST (\HasChildren) "." "Archive"`},
		{`LIST "" "%"`, `* LIST (\HasNoChildren) "." INBOX`},
		{"SUBSCRIBE Archive", ""},
		{`LSUB "" "*"`, `* LSUB (\HasChildren) "." "Archive"`},
		{"STATUS INBOX (MESSAGES UNSEEN UIDNEXT)", "MESSAGES 2 UIDNEXT 3 UNSEEN 2"},
		{"SELECT INBOX", "* 2 EXISTS"},
		{"FETCH 1 (FLAGS UID RFC822.SIZE)", fmt.Sprintf("RFC822.SIZE %d", len(plain))},
		{"FETCH 1 ENVELOPE", `"plain one"`},
		{"FETCH 2 BODYSTRUCTURE", `("application" "octet-stream" NIL NIL NIL "base64" 8`},
		{"FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "Subject: plain one"},
		{"FETCH 2 BODY.PEEK[2]", "AAECAw=="},
		{"FETCH 1 FLAGS", `FLAGS ()`},
		{"FETCH 1 BODY[TEXT]", "hello alice"},
		{"FETCH 1 FLAGS", `FLAGS (\Seen)`},
		{"SEARCH UNSEEN", "* SEARCH 2"},
		{`SEARCH SUBJECT "attachment"`, "* SEARCH 2"},
		{`SEARCH BODY "hello"`, "* SEARCH 1"},
		{"UID SEARCH ALL", "* SEARCH 1 2"},
		{`STORE 2 +FLAGS (\Flagged)`, `FLAGS (\Flagged)`},
		{`SEARCH FLAGGED`, "* SEARCH 2"},
		{"COPY 1:2 Archive", ""},
		{"STATUS Archive (MESSAGES)", "MESSAGES 2"},
		{`STORE 1 +FLAGS.SILENT (\Deleted)`, ""},
		{"EXPUNGE", "* 1 EXPUNGE"},
		{"FETCH 1 (UID FLAGS)", `UID 2 FLAGS (\Flagged)`},
		{`APPEND Archive (\Seen) {12+}` + "\r\nSubject: x\r\n", "[APPENDUID"},
		{"RENAME Archive Old", ""},
		{`LIST "" "Old*"`, `"." "Old.2026"`},
		{"EXAMINE Old", "[READ-ONLY]"},
		{"DELETE Old.2026", ""},
		{"LOGOUT", "* BYE"},
	} {
		u, st := cl.do(tc.cmd)
		all := strings.Join(u, "\n") + "\n" + st
		if !strings.HasPrefix(st, "OK") || !strings.Contains(all, tc.want) {
			t.Fatalf("%s:\n%s\nwant OK containing %q", tc.cmd, all, tc.want)
		}
	}
}

// TestErrors: refusals carry the right status and response codes.
func TestErrors(t *testing.T) {
	s, _, _ := testServer(t, plain)
	cl := dial(t, s.Addr())
	for _, tc := range []struct{ cmd, want string }{
		{"SELECT INBOX", "BAD"},
		{"LOGIN alice nope", "NO [AUTHENTICATIONFAILED]"},
		{"LOGIN alice wonderland", "OK"},
		{"SELECT Nope", "NO [NONEXISTENT]"},
		{"CREATE INBOX", "NO [ALREADYEXISTS]"},
		{"CREATE ../etc", "NO [CANNOT]"},
		{"DELETE INBOX", "NO [CANNOT]"},
		{"APPEND Nope {3+}\r\nabc", "NO [TRYCREATE]"},
		{"COPY 1 Nope", "BAD"},
		{"EXAMINE INBOX", "OK [READ-ONLY]"},
		{`STORE 1 +FLAGS (\Seen)`, "NO"},
		{"COPY 1 Nope", "NO [TRYCREATE]"},
		{"APPEND INBOX {2000000}", "NO [TOOBIG]"},
		{"CLOSE", "OK"},
		{"SELECT INBOX", "OK"},
	} {
		_, st := cl.do(tc.cmd)
		if !strings.HasPrefix(st, tc.want) {
			t.Fatalf("%s: %q, want %q", tc.cmd, st, tc.want)
		}
	}
}

// TestAuthFailuresBye: too many failed logins end the connection with BYE.
func TestAuthFailuresBye(t *testing.T) {
	s, _, _ := testServer(t)
	cl := dial(t, s.Addr())
	cl.do("LOGIN alice a")
	cl.do("LOGIN alice b")
	fmt.Fprintf(cl.c, "a9 LOGIN alice c\r\n")
	if l := cl.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("third failure: %q, want BYE", l)
	}
}

// TestFlagsAcrossSessions: a flag set in one session is seen by another session that has the
// mailbox selected (unsolicited FETCH on NOOP) and by a later session.
func TestFlagsAcrossSessions(t *testing.T) {
	s, _, _ := testServer(t, plain)
	home, office := dial(t, s.Addr()), dial(t, s.Addr())
	for _, c := range []*client{home, office} {
		c.ok("LOGIN alice wonderland")
		c.ok("SELECT INBOX")
	}
	home.ok(`STORE 1 +FLAGS (\Flagged \Answered)`)
	if got := office.ok("NOOP"); !strings.Contains(got, `* 1 FETCH (UID 1 FLAGS (\Flagged \Answered))`) {
		t.Fatalf("office NOOP = %q, want the new flags", got)
	}
	later := dial(t, s.Addr())
	later.ok("LOGIN alice@outpost.test wonderland")
	later.ok("EXAMINE INBOX")
	if got := later.ok("FETCH 1 FLAGS"); !strings.Contains(got, `\Flagged`) {
		t.Fatalf("new session FETCH = %q", got)
	}
	home.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	home.ok("EXPUNGE")
	if got := office.ok("NOOP"); !strings.Contains(got, "* 1 EXPUNGE") {
		t.Fatalf("office NOOP after expunge = %q", got)
	}
}

// TestIdleReportsNewMail: a delivery into the store during IDLE produces an EXISTS update.
func TestIdleReportsNewMail(t *testing.T) {
	s, store, alice := testServer(t, plain)
	cl := dial(t, s.Addr())
	cl.ok("LOGIN alice wonderland")
	cl.ok("SELECT INBOX")
	fmt.Fprintf(cl.c, "i1 IDLE\r\n")
	if l := cl.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	if _, err := store.Deliver(alice, "", strings.NewReader("Subject: new\r\n\r\nnew mail\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := cl.line(); l != "* 2 EXISTS" {
		t.Fatalf("during IDLE: %q, want * 2 EXISTS", l)
	}
	fmt.Fprintf(cl.c, "DONE\r\n")
	if l := cl.line(); !strings.HasPrefix(l, "i1 OK") {
		t.Fatalf("after DONE: %q", l)
	}
	if got := cl.ok("FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"); !strings.Contains(got, "Subject: new") {
		t.Fatalf("new message: %q", got)
	}
}

// TestImaplibAndCurl: python's imaplib and curl imap:// read the same message.
func TestImaplibAndCurl(t *testing.T) {
	s, _, _ := testServer(t, plain, multi)
	host, port, _ := net.SplitHostPort(s.Addr())
	py := clienttest.Need(t, "python3", "python3")
	script := `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login("alice", "wonderland")
m.select("INBOX")
typ, data = m.search(None, "SUBJECT", '"plain one"')
typ, data = m.fetch(data[0].split()[0], "(BODY.PEEK[])")
sys.stdout.buffer.write(data[0][1])
m.store(b"2", "+FLAGS", "\\Flagged")
m.logout()
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil || string(out) != plain {
		t.Fatalf("imaplib: %v\n%q", err, out)
	}
	curl := clienttest.Need(t, "curl", "curl")
	list, err := exec.Command(curl, "-sS", "imap://alice:wonderland@"+s.Addr()+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(list), "INBOX") {
		t.Fatalf("curl LIST: %v %q", err, list)
	}
	msg, err := exec.Command(curl, "-sS", "imap://alice:wonderland@"+s.Addr()+"/INBOX;UID=2").CombinedOutput()
	if err != nil || !bytes.Equal(msg, []byte(multi)) {
		t.Fatalf("curl FETCH UID 2: %v %q", err, msg)
	}
	flags, err := exec.Command(curl, "-sS", "imap://alice:wonderland@"+s.Addr()+"/INBOX", "-X", "UID FETCH 2 FLAGS").CombinedOutput()
	if err != nil || !strings.Contains(string(flags), `\Flagged`) {
		t.Fatalf("curl sees flags set by imaplib: %v %q", err, flags)
	}
}

// FuzzSession: arbitrary client input gets answers, never a crash or a hang.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"a LOGIN alice wonderland\r\nb SELECT INBOX\r\nc FETCH 1:* (BODY[] BODYSTRUCTURE ENVELOPE)\r\nd LOGOUT\r\n",
		"a LOGIN alice wonderland\r\nb SELECT INBOX\r\nc SEARCH OR (FROM x) NOT (BODY y) 1:*\r\nd UID STORE * FLAGS ()\r\n",
		"a AUTHENTICATE PLAIN\r\n*\r\n", "a LOGIN {5}\r\nalice {10}\r\nwonderland\r\n", "* * *\r\n",
	} {
		f.Add([]byte(s))
	}
	s, _, _ := testServer(f, plain, multi)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting %q %v", l, err)
		}
		c.Write(in)
		c.Write([]byte("\r\nz LOGOUT\r\n"))
		_ = c.(*net.TCPConn).CloseWrite() // end of input: the server must finish, not wait
		_, _ = io.Copy(io.Discard, br)
	})
}

// TestLongCommandLine: a command line beyond go-imap's 50 KiB limit is refused and the
// connection closed, instead of buffering without bound.
func TestLongCommandLine(t *testing.T) {
	s, _, _ := testServer(t)
	cl := dial(t, s.Addr())
	cl.ok("LOGIN alice wonderland")
	fmt.Fprintf(cl.c, "a SELECT %s\r\n", strings.Repeat("x", 100<<10))
	rest, _ := io.ReadAll(cl.br)
	if r := string(rest); len(r) != 0 && !strings.HasPrefix(r, "a NO") && !strings.HasPrefix(r, "a BAD") && !strings.HasPrefix(r, "* BYE") {
		t.Fatalf("long line answered %q", rest)
	}
}

// TestInsecureLoginLoopbackOnly: allow_insecure_auth covers loopback clients only; a client
// that is not on loopback sees LOGINDISABLED and LOGIN gets NO [PRIVACYREQUIRED] before TLS.
func TestInsecureLoginLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		name         string
		remote       bool
		wantDisabled bool
		want         string
	}{
		{"loopback client", false, false, "OK"},
		{"non-loopback client", true, true, "NO [PRIVACYREQUIRED]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := testServerWith(t, func(o *Options) {
				if tc.remote {
					o.isLocal = func(net.Addr) bool { return false }
				}
			})
			cl := dial(t, s.Addr())
			caps := cl.ok("CAPABILITY")
			if got := strings.Contains(caps, "LOGINDISABLED"); got != tc.wantDisabled {
				t.Fatalf("LOGINDISABLED in %q = %v, want %v", caps, got, tc.wantDisabled)
			}
			if _, st := cl.do("LOGIN alice wonderland"); !strings.HasPrefix(st, tc.want) {
				t.Fatalf("LOGIN: %q, want %q", st, tc.want)
			}
		})
	}
}

// TestMove: MOVE and UID MOVE (RFC 6851) with python imaplib: COPYUID before the EXPUNGE, the
// message leaves INBOX and arrives in the target folder, another session sees the EXPUNGE;
// MOVE to a missing folder is NO [TRYCREATE] and after EXAMINE NO [NOPERM].
func TestMove(t *testing.T) {
	s, _, _ := testServer(t, plain, multi)
	py := clienttest.Need(t, "python3", "python3")
	other := dial(t, s.Addr())
	other.ok("LOGIN alice wonderland")
	other.ok("SELECT INBOX")
	host, port, _ := net.SplitHostPort(s.Addr())
	script := `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login("alice", "wonderland")
typ, caps = m.capability()
print("MOVE" in caps[0].decode().split())
m.create("Archive")
m.select("INBOX")
typ, data = m.uid("MOVE", "1", "Archive")
print(typ, m.untagged_responses.get("OK"), m.untagged_responses.get("EXPUNGE"))
typ, data = m.uid("MOVE", "2", "Nowhere")
print(typ, data)
typ, data = m.search(None, "ALL")
print("inbox", data)
m.select("Archive")
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("archive", data[0][1].decode().strip())
m.logout()
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"True\n",                      // MOVE advertised
		"OK [b'[COPYUID ", "] [b'1']", // untagged COPYUID, then EXPUNGE 1
		"NO [b'[TRYCREATE]",          // missing target folder
		"inbox [b'1']",               // one message left in INBOX
		"archive Subject: plain one", // the moved one is in Archive
	} {
		if !strings.Contains(got, want) {
			t.Errorf("imaplib output lacks %q:\n%s", want, got)
		}
	}
	if u, _ := other.do("NOOP"); !strings.Contains(strings.Join(u, "\n"), "* 1 EXPUNGE") {
		t.Errorf("other session after MOVE: %q", u)
	}
	other.ok("EXAMINE INBOX")
	if _, st := other.do("MOVE 1 Archive"); !strings.HasPrefix(st, "NO") {
		t.Errorf("MOVE after EXAMINE: %q", st)
	}
}
