package smtp

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// TestRealClientsSendAndRead: python smtplib (with and without AUTH), swaks (AUTH LOGIN) and
// curl send; python poplib and curl pop3:// list and fetch the same messages.
func TestRealClientsSendAndRead(t *testing.T) {
	e := startMail(t, envConfig{})
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "bob@outpost.test", "alice@outpost.test", "py noauth")
	pyClient(t, "send", host, port, "alice@outpost.test", "bob@outpost.test", "py auth", "alice", "wonderland")
	if p, err := lookTool("swaks"); err == nil {
		run(t, p, "--server", host, "--port", port, "--ehlo", "swaks.test", "--from", "alice@outpost.test",
			"--to", "bob@outpost.test", "--auth", "LOGIN", "--auth-user", "alice@outpost.test", "--auth-password", "wonderland",
			"--header", "Subject: swaks auth", "--body", "from swaks")
	} else {
		t.Log("swaks not installed (Debian package swaks): skipping the swaks send")
	}
	curl := clienttest.Need(t, "curl", "curl")
	body := writeTemp(t, "curl.eml", []byte("From: bob@outpost.test\r\nTo: alice@outpost.test\r\nSubject: curl send\r\n\r\nfrom curl\r\n"))
	run(t, curl, "-sS", "--url", "smtp://"+e.a.Addr()+"/curl.test", "--mail-from", "bob@outpost.test",
		"--mail-rcpt", "alice@outpost.test", "-T", body)

	alice := e.waitInbox(t, "alice@outpost.test", 2)
	for i, want := range []string{"Subject: py noauth", "Subject: curl send"} {
		if !bytes.Contains(alice[i], []byte(want)) || !bytes.HasPrefix(alice[i], []byte("Received: from ")) {
			t.Errorf("alice message %d lacks %q or the Received header:\n%s", i+1, want, alice[i])
		}
	}
	if !bytes.Contains(alice[0], []byte("\r\n.leading dot line\r\n")) {
		t.Errorf("dot-stuffing not undone:\n%s", alice[0])
	}
	bob := e.waitInbox(t, "bob@outpost.test", len(bobWant()))
	if !bytes.Contains(bob[0], []byte("with ESMTPA")) {
		t.Errorf("authenticated submission not marked ESMTPA:\n%s", bob[0])
	}

	pHost, pPort := hostPort(t, e.pop.Addr())
	list := pyClient(t, "poplist", pHost, pPort, "alice", "wonderland")
	if lines := strings.Split(strings.TrimSpace(list), "\n"); len(lines) != 2 {
		t.Fatalf("poplib LIST/UIDL = %q, want 2 messages", list)
	}
	out := filepath.Join(t.TempDir(), "retr.eml")
	pyClient(t, "popretr", pHost, pPort, "alice@outpost.test", "wonderland", "1", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, alice[0]) {
		t.Errorf("poplib RETR differs from the stored message:\n%q\n%q", got, alice[0])
	}
	iHost, iPort := hostPort(t, e.imap.Addr())
	imapOut := filepath.Join(t.TempDir(), "imap.eml")
	pyClient(t, "imapfetch", iHost, iPort, "alice", "wonderland", "py noauth", imapOut)
	if got, _ := os.ReadFile(imapOut); !bytes.Equal(got, alice[0]) {
		t.Errorf("imaplib BODY[] differs from the stored message:\n%q\n%q", got, alice[0])
	}
	curlIMAP := run(t, curl, "-sS", "imap://alice:wonderland@"+e.imap.Addr()+"/INBOX;UID=2")
	if curlIMAP != string(alice[1]) {
		t.Errorf("curl imap UID 2 = %q, want %q", curlIMAP, alice[1])
	}
	curlList := run(t, curl, "-sS", "pop3://alice:wonderland@"+e.pop.Addr()+"/")
	if strings.Count(curlList, "\n") != 2 {
		t.Errorf("curl pop3 LIST = %q", curlList)
	}
	curlMsg := run(t, curl, "-sS", "pop3://alice:wonderland@"+e.pop.Addr()+"/2")
	if !strings.Contains(curlMsg, "Subject: curl send") {
		t.Errorf("curl pop3 RETR 2 = %q", curlMsg)
	}
}

// bobWant lists what bob receives (swaks only when installed).
func bobWant() []string {
	if _, err := lookTool("swaks"); err == nil {
		return []string{"py auth", "swaks auth"}
	}
	return []string{"py auth"}
}

// TestMIMEAttachmentRoundTrip: python builds a multipart message with a base64 attachment and
// sends it; poplib retrieves it byte-exact (after our Received header) and the attachment
// decodes to the original bytes.
func TestMIMEAttachmentRoundTrip(t *testing.T) {
	e := startMail(t, envConfig{})
	blob := make([]byte, 150<<10)
	_, _ = rand.Read(blob)
	attachment := writeTemp(t, "blob.bin", blob)
	sent := filepath.Join(t.TempDir(), "sent.eml")
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "mime", host, port, "bob@outpost.test", "alice@outpost.test", attachment, sent)
	stored := e.waitInbox(t, "alice@outpost.test", 1)[0]
	out := filepath.Join(t.TempDir(), "retr.eml")
	pHost, pPort := hostPort(t, e.pop.Addr())
	pyClient(t, "popretr", pHost, pPort, "alice", "wonderland", "1", out)
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(sent)
	if !bytes.Equal(got, stored) {
		t.Fatal("POP3 RETR is not the stored message")
	}
	if !bytes.Equal(stripReceived(got), want) {
		t.Fatalf("message changed in transit: got %d bytes, sent %d", len(stripReceived(got)), len(want))
	}
	if dec := attachmentOf(t, got); !bytes.Equal(dec, blob) {
		t.Fatalf("attachment differs: %d bytes, want %d", len(dec), len(blob))
	}
	iHost, iPort := hostPort(t, e.imap.Addr())
	imapOut := filepath.Join(t.TempDir(), "imap.eml")
	pyClient(t, "imapfetch", iHost, iPort, "alice", "wonderland", "MIME round trip", imapOut)
	if viaIMAP, _ := os.ReadFile(imapOut); !bytes.Equal(viaIMAP, stored) {
		t.Fatal("IMAP BODY[] is not the stored message")
	}
}

// stripReceived removes the leading Received header that we add.
func stripReceived(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("Received:")) {
		return msg
	}
	i := bytes.Index(msg, []byte("\r\n"))
	for i >= 0 && i+2 < len(msg) && (msg[i+2] == ' ' || msg[i+2] == '\t') {
		j := bytes.Index(msg[i+2:], []byte("\r\n"))
		i = i + 2 + j
	}
	return msg[i+2:]
}

// attachmentOf decodes the base64 attachment of a multipart message.
func attachmentOf(t *testing.T, msg []byte) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("no attachment part: %v", err)
		}
		if p.FileName() == "blob.bin" {
			data, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
}

// TestRelayThroughMX: alice (authenticated) writes to carol@remote.test on host A; the queue
// looks up remote.test's MX in the test DNS server, connects to host B at 127.0.0.2, and B
// delivers to carol's mailbox.
func TestRelayThroughMX(t *testing.T) {
	e := startMail(t, envConfig{})
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "alice@outpost.test", "carol@remote.test", "to carol via MX", "alice", "wonderland")
	msg := e.waitInbox(t, "carol@remote.test", 1)[0]
	if n := bytes.Count(msg, []byte("Received: from ")); n != 2 {
		t.Fatalf("want two Received headers (host A, then host B), got %d:\n%s", n, msg)
	}
	if !bytes.Contains(msg, []byte("by mx.remote.test (Outpost)")) || !bytes.Contains(msg, []byte("by outpost.test (Outpost)")) {
		t.Fatalf("trace headers do not show both hosts:\n%s", msg)
	}
	e.waitQueue(t, "empty", func(l []Envelope) bool { return len(l) == 0 })
}

// TestRelayRetryThenBounce: the destination's MX host is down, so the queue retries with
// exponential back-off on an injected clock; past the lifetime the sender gets an RFC 3464
// bounce in her mailbox and the message leaves the queue.
func TestRelayRetryThenBounce(t *testing.T) {
	e := startMail(t, envConfig{clock: true})
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "alice@outpost.test", "dave@down.test", "doomed", "alice", "wonderland")
	attempts := func(n int) func([]Envelope) bool {
		return func(l []Envelope) bool { return len(l) == 1 && l[0].Rcpts[0].Attempts == n }
	}
	l := e.waitQueue(t, "first attempt", attempts(1))
	r := l[0].Rcpts[0]
	if r.State != StateQueued || !r.Next.Equal(e.clock.Now().Add(time.Minute)) || !strings.Contains(r.LastError, "127.0.0.3") {
		t.Fatalf("after the first failure: %+v, want queued, retry in 1m (initial back-off)", r)
	}
	e.clock.Advance(time.Minute)
	e.q.Kick()
	l = e.waitQueue(t, "second attempt", attempts(2))
	if got := l[0].Rcpts[0].Next.Sub(e.clock.Now()); got != 2*time.Minute {
		t.Fatalf("second back-off = %v, want 2m (doubled)", got)
	}
	e.clock.Advance(time.Hour) // past the lifetime
	e.q.Kick()
	bounce := e.waitInbox(t, "alice@outpost.test", 1)[0]
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status", "Content-Type: message/delivery-status",
		"Final-Recipient: rfc822; dave@down.test", "Action: failed", "Status: 5.4.7", "Subject: doomed",
	} {
		if !bytes.Contains(bounce, []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	e.waitQueue(t, "empty", func(l []Envelope) bool { return len(l) == 0 })
}

// TestRelayPermanentFailures: NXDOMAIN, null MX and a 550 from the destination host fail at
// once with a bounce, without retries.
func TestRelayPermanentFailures(t *testing.T) {
	e := startMail(t, envConfig{})
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "alice@outpost.test", "x@nowhere.test", "nx", "alice", "wonderland")
	pyClient(t, "send", host, port, "alice@outpost.test", "x@nullmx.test", "null", "alice", "wonderland")
	pyClient(t, "send", host, port, "alice@outpost.test", "nobody@remote.test", "unknown there", "alice", "wonderland")
	msgs := e.waitInbox(t, "alice@outpost.test", 3)
	all := string(bytes.Join(msgs, nil))
	for _, want := range []string{"Status: 5.1.2", "Status: 5.1.10", "Status: 5.1.1", "said: 550 5.1.1"} {
		if !strings.Contains(all, want) {
			t.Errorf("bounces lack %q", want)
		}
	}
}

// lookTool finds an optional external tool.
func lookTool(name string) (string, error) { return exec.LookPath(name) }

// TestOneMessageManyRecipients: one DATA for local and relayed recipients is queued once and
// delivered to each mailbox exactly once (duplicate RCPTs collapse).
func TestOneMessageManyRecipients(t *testing.T) {
	e := startMail(t, envConfig{relayNet: []string{"127.0.0.0/8"}})
	c, err := gosmtp.Dial(e.a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("bob@outpost.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@outpost.test", "bob@outpost.test", "carol@remote.test", "ALICE@outpost.test"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s (relay_networks allows 127.0.0.0/8): %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: to all\r\n\r\nhi all\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice@outpost.test", "bob@outpost.test", "carol@remote.test"} {
		if msg := e.waitInbox(t, u, 1)[0]; !bytes.Contains(msg, []byte("Subject: to all")) {
			t.Errorf("%s got %q", u, msg)
		}
	}
	e.waitQueue(t, "empty", func(l []Envelope) bool { return len(l) == 0 })
}

// TestRestartResumesRetries: a deferred relay keeps its attempts and schedule across a
// restart, and the restarted queue retries it when due.
func TestRestartResumesRetries(t *testing.T) {
	dir := t.TempDir()
	e := startMail(t, envConfig{dir: dir, clock: true})
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "alice@outpost.test", "dave@down.test", "survives restarts", "alice", "wonderland")
	before := e.waitQueue(t, "first attempt", func(l []Envelope) bool { return len(l) == 1 && l[0].Rcpts[0].Attempts == 1 })
	e.stop()

	e2 := startMail(t, envConfig{dir: dir, clock: true})
	after := e2.q.List()
	if len(after) != 1 || after[0].ID != before[0].ID || after[0].Rcpts[0].Attempts != 1 || !after[0].Rcpts[0].Next.Equal(before[0].Rcpts[0].Next) {
		t.Fatalf("after restart the queue is %+v, want %+v", after, before)
	}
	e2.clock.Advance(time.Minute)
	e2.q.Kick()
	e2.waitQueue(t, "retry after restart", func(l []Envelope) bool { return len(l) == 1 && l[0].Rcpts[0].Attempts == 2 })
}
