package smtp

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// step is one client line and the reply prefix expected for it.
type step struct{ send, want string }

// plainAuth is an AUTH PLAIN command with an initial response.
func plainAuth(user, pass string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
}

// TestReplies: per-recipient replies, relay refusal and every limit, each with its standard
// reply code, over a raw connection.
func TestReplies(t *testing.T) {
	e := startMail(t, envConfig{maxSize: 2000})
	mailFrom := step{"MAIL FROM:<bob@outpost.test>", "250 "}
	long := strings.Repeat("x", 1200)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"local user", []step{mailFrom, {"RCPT TO:<alice@outpost.test>", "250 "}}},
		{"local user, full case", []step{mailFrom, {"RCPT TO:<Alice@OUTPOST.test>", "250 "}}},
		{"no such user", []step{mailFrom, {"RCPT TO:<nobody@outpost.test>", "550 5.1.1"}}},
		{"open relay refused", []step{mailFrom, {"RCPT TO:<victim@example.com>", "554 5.7.1"}}},
		{"other local host's domain", []step{mailFrom, {"RCPT TO:<carol@remote.test>", "551 5.7.1"}}},
		{"relay after AUTH", []step{{plainAuth("alice", "wonderland"), "235 "}, {"MAIL FROM:<alice@outpost.test>", "250 "}, {"RCPT TO:<victim@example.com>", "250 "}}},
		{"AUTH user sends as self", []step{{plainAuth("alice", "wonderland"), "235 "}, {"MAIL FROM:<Alice@Outpost.test>", "250 "}}},
		{"AUTH user forges sender", []step{{plainAuth("alice", "wonderland"), "235 "},
			{"MAIL FROM:<bob@outpost.test>", "553 5.7.1 <bob@outpost.test>: Sender address rejected: not owned by user alice"}}},
		{"AUTH user null sender (bounce)", []step{{plainAuth("alice", "wonderland"), "235 "}, {"MAIL FROM:<>", "250 "}}},
		{"null reverse-path", []step{{"MAIL FROM:<>", "250 "}, {"RCPT TO:<alice@outpost.test>", "250 "}}},
		{"too many recipients", []step{mailFrom,
			{"RCPT TO:<alice@outpost.test>", "250 "}, {"RCPT TO:<bob@outpost.test>", "250 "},
			{"RCPT TO:<alice@outpost.test>", "250 "}, {"RCPT TO:<bob@outpost.test>", "250 "},
			{"RCPT TO:<alice@outpost.test>", "250 "}, {"RCPT TO:<bob@outpost.test>", "452 4.5.3"}}},
		{"declared size too large", []step{{"MAIL FROM:<bob@outpost.test> SIZE=5000", "552 5.3.4"}}},
		{"message too large", []step{mailFrom, {"RCPT TO:<alice@outpost.test>", "250 "}, {"DATA", "354 "},
			{strings.Repeat("0123456789abcdef0123456789abcdef\r\n", 100) + ".", "552 5.3.4"}}},
		{"line too long", []step{{"NOOP " + long, "500 5.4.0"}}},
		{"auth failures", []step{{plainAuth("alice", "x"), "535 5.7.8"}, {plainAuth("alice", "y"), "535 5.7.8"}, {plainAuth("bob", "z"), "421 4.7.0"}}},
		{"SMTPUTF8 and 8BITMIME", []step{{"MAIL FROM:<jörg@bücher.test> SMTPUTF8 BODY=8BITMIME", "250 "},
			{"RCPT TO:<alice@outpost.test>", "250 "}, {"DATA", "354 "}, {"Subject: grüße\r\n\r\nÄÖÜ\r\n.", "250 "}}},
		{"bad address syntax", []step{mailFrom, {"RCPT TO:<alice@@outpost.test>", "553 5.1.3"}}},
		{"VRFY does not disclose", []step{{"VRFY alice", "252 "}}},
		{"DATA without RCPT", []step{mailFrom, {"DATA", "502 "}}},
		{"unknown command", []step{{"FROB", "500 "}}},
		{"accepted and queued", []step{mailFrom, {"RCPT TO:<alice@outpost.test>", "250 "}, {"DATA", "354 "},
			{"Subject: hi\r\n\r\nbody\r\n.", "250 2.0.0 OK: queued as "}, {"QUIT", "221 "}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br, greeting := dialRaw(t, e.a.Addr())
			if !strings.HasPrefix(greeting, "220 ") {
				t.Fatalf("greeting %q", greeting)
			}
			for _, s := range append([]step{{"EHLO test.example", "250 "}}, tc.steps...) {
				if _, err := c.Write([]byte(s.send + "\r\n")); err != nil {
					t.Fatalf("%s: write: %v", s.send, err)
				}
				if got := readReply(t, br); !strings.HasPrefix(got, s.want) {
					t.Fatalf("%.40s: reply %q, want %q", s.send, got, s.want)
				}
			}
		})
	}
}

// TestSenderLoginMismatchAllowed: with enforcement switched off an authenticated user may use
// any MAIL FROM address.
func TestSenderLoginMismatchAllowed(t *testing.T) {
	e := startMail(t, envConfig{anyFrom: true})
	c, br, _ := dialRaw(t, e.a.Addr())
	for _, s := range []step{{"EHLO x", "250 "}, {plainAuth("alice", "wonderland"), "235 "}, {"MAIL FROM:<bob@outpost.test>", "250 "}} {
		c.Write([]byte(s.send + "\r\n"))
		if got := readReply(t, br); !strings.HasPrefix(got, s.want) {
			t.Fatalf("%s: reply %q, want %q", s.send, got, s.want)
		}
	}
}

// TestInsecureAuthLoopbackOnly: allow_insecure_auth covers loopback clients only; a client
// that is not on loopback sees no AUTH in EHLO and gets 538 5.7.11 for AUTH without TLS.
func TestInsecureAuthLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		remote   bool
		wantAuth bool
		want     string
	}{
		{"loopback client", false, true, "235 2.0.0"},
		{"non-loopback client", true, false, "538 5.7.11 Encryption required for requested authentication mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startMail(t, envConfig{remote: tc.remote})
			c, br, _ := dialRaw(t, e.a.Addr())
			c.Write([]byte("EHLO x\r\n"))
			auth := false
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				auth = auth || strings.HasPrefix(line[4:], "AUTH ")
				if line[3] == ' ' {
					break
				}
			}
			if auth != tc.wantAuth {
				t.Fatalf("EHLO advertises AUTH = %v, want %v", auth, tc.wantAuth)
			}
			c.Write([]byte(plainAuth("alice", "wonderland") + "\r\n"))
			if got := readReply(t, br); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("AUTH reply %q, want %q", got, tc.want)
			}
		})
	}
}

// dialRaw opens a raw SMTP connection (closed at cleanup, 30s deadline) and returns it, its
// reader and the last line of the greeting.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	return c, br, readReply(t, br)
}

// readReply reads a (possibly multi-line) SMTP reply and returns its last line.
func readReply(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read reply: %v (partial %q)", err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

// TestAuthFailuresCloseConnection: after the 421 the server hangs up.
func TestAuthFailuresCloseConnection(t *testing.T) {
	e := startMail(t, envConfig{})
	c, br, _ := dialRaw(t, e.a.Addr())
	c.Write([]byte("EHLO x\r\n"))
	readReply(t, br)
	for range 3 {
		c.Write([]byte(plainAuth("alice", "bad") + "\r\n"))
		readReply(t, br)
	}
	if rest, err := br.ReadString('\n'); err != io.EOF {
		t.Fatalf("connection still open after 421: %q, %v", rest, err)
	}
}

// FuzzCopyNormalized: message normalisation never panics, always ends lines in CRLF and keeps
// every non-line-end byte.
func FuzzCopyNormalized(f *testing.F) {
	for _, s := range []string{"", "a\nb\r\n", "Received: x\r\nReceived: y\r\n\r\nbody", "\r\r\n\n", strings.Repeat("x", 70000) + "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		if _, err := copyNormalized(&out, bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		got := out.Bytes()
		if bytes.Count(got, []byte("\n")) != bytes.Count(in, []byte("\n")) {
			t.Fatalf("line count changed: %q -> %q", in, got)
		}
		if bytes.Count(got, []byte("\n")) != bytes.Count(got, []byte("\r\n")) {
			t.Fatalf("bare LF left: %q", got)
		}
	})
}

// FuzzValidAddress: address checks never panic and never accept spaces or angle brackets.
func FuzzValidAddress(f *testing.F) {
	for _, s := range []string{"a@b", "a b@c", "<a@b>", "@", "a@", "a@b@c", "ü@ex.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validAddress(s) && strings.ContainsAny(s, " <>\r\n") {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzSession: arbitrary client input against a live host gets replies, never a crash or hang.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@outpost.test>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
		"HELO\r\nMAIL FROM:<<>>\r\nRCPT TO:<>\r\n", "EHLO a\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN =\r\n",
		"EHLO a\r\nMAIL FROM:<a@b> SIZE=-1 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@outpost.test>\r\nBDAT 3 LAST\r\nabc",
	} {
		f.Add([]byte(s))
	}
	e := startMail(f, envConfig{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", e.a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(in)
		c.Write([]byte("\r\nQUIT\r\n"))
		_ = c.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("no greeting: %q %v", line, err)
		}
	})
}
