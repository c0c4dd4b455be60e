package smtp

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/tmpfstest"
)

// TestDiskFull runs the mail system with its data directory on a small tmpfs and fills it:
// RCPT is answered 452 4.3.1 when the spool is nearly full, the end of DATA is answered
// 452 4.3.1 when the message cannot be written, nothing is left half-queued, and mail queued
// while the mailbox disk was full is delivered once space returns.
func TestDiskFull(t *testing.T) {
	dir := tmpfstest.Mount(t, 8<<20)
	e := startMail(t, envConfig{dir: dir, clock: true, minFree: 256 << 10})
	queue := filepath.Join(dir, "queue")

	t.Run("RCPT on a full spool", func(t *testing.T) {
		fill := tmpfstest.Fill(t, dir, 128<<10) // below MinFree
		defer fill.Release(t)
		c, br := smtpTransaction(t, e.a.Addr(), "")
		send(t, c, br, "RCPT TO:<alice@outpost.test>", "452 4.3.1 ")
		send(t, c, br, "QUIT", "221 ")
		noQueueFiles(t, queue)
	})

	t.Run("MAIL with a SIZE that does not fit", func(t *testing.T) {
		fill := tmpfstest.Fill(t, dir, 1<<20)
		defer fill.Release(t)
		c, br, _ := dialRaw(t, e.a.Addr())
		send(t, c, br, "EHLO client.test", "250 ")
		send(t, c, br, "MAIL FROM:<bob@outpost.test> SIZE=2000000", "452 4.3.1 ") // RFC 1870 6.1
		send(t, c, br, "MAIL FROM:<bob@outpost.test> SIZE=1000", "250 ")
		send(t, c, br, "RCPT TO:<alice@outpost.test>", "250 ") // a small one still fits
		noQueueFiles(t, queue)
	})

	t.Run("DATA that cannot be made durable", func(t *testing.T) {
		fill := tmpfstest.Fill(t, dir, 512<<10) // above MinFree, below the message
		defer fill.Release(t)
		c, br := smtpTransaction(t, e.a.Addr(), "")
		sendMessage(t, c, br, "too big for the disk", 1<<20, "452 4.3.1 ")
		noQueueFiles(t, queue)
		send(t, c, br, "NOOP", "250 ") // the session goes on
		send(t, c, br, "QUIT", "221 ")
	})

	t.Run("queued mail is delivered once space returns", func(t *testing.T) {
		// Room for the queue's copy (body and envelope), none for the mailbox's.
		fill := tmpfstest.Fill(t, dir, 300<<10)
		c, br := smtpTransaction(t, e.a.Addr(), "")
		sendMessage(t, c, br, "waits for space", 200<<10, "250 ")
		e.waitQueue(t, "delivery deferred for lack of space", func(l []Envelope) bool {
			return len(l) == 1 && l[0].Rcpts[0].Attempts == 1 && l[0].Rcpts[0].Status == "4.3.1"
		})
		if msgs, _ := e.inbox(t, "alice@outpost.test"); len(msgs) != 0 {
			t.Fatalf("alice has %d messages while her mailbox disk is full", len(msgs))
		}
		fill.Release(t)
		e.clock.Advance(2 * e.q.opts.RetryInitial)
		e.q.Kick()
		msgs := e.waitInbox(t, "alice@outpost.test", 1)
		if !strings.Contains(string(msgs[0]), "Subject: waits for space") {
			t.Fatalf("unexpected message:\n%.300s", msgs[0])
		}
		e.waitQueue(t, "empty", func(l []Envelope) bool { return len(l) == 0 })
		noQueueFiles(t, queue)
	})
}

// smtpTransaction opens a raw session, says EHLO and MAIL FROM (with extra parameters).
func smtpTransaction(t *testing.T, addr, mailParams string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br, greeting := dialRaw(t, addr)
	if !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("greeting %q", greeting)
	}
	send(t, c, br, "EHLO client.test", "250 ")
	send(t, c, br, "MAIL FROM:<bob@outpost.test>"+mailParams, "250 ")
	return c, br
}

// send writes a command line and checks that the reply starts with want.
func send(t *testing.T, c net.Conn, br *bufio.Reader, cmd, want string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		t.Fatal(err)
	}
	if got := readReply(t, br); !strings.HasPrefix(got, want) {
		t.Fatalf("%s: %q, want %q", cmd, got, want)
	}
}

// sendMessage sends RCPT TO alice, DATA and a message of about size octets, and checks that
// the reply to its end starts with want.
func sendMessage(t *testing.T, c net.Conn, br *bufio.Reader, subject string, size int, want string) {
	t.Helper()
	send(t, c, br, "RCPT TO:<alice@outpost.test>", "250 ")
	send(t, c, br, "DATA", "354 ")
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "From: bob@outpost.test\r\nTo: alice@outpost.test\r\nSubject: %s\r\n\r\n", subject)
	line := strings.Repeat("x", 998) + "\r\n"
	for n := 0; n < size; n += len(line) {
		w.WriteString(line)
	}
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := readReply(t, br); !strings.HasPrefix(got, want) {
		t.Fatalf("end of DATA: %q, want %q", got, want)
	}
}

// noQueueFiles checks that the queue holds no message and no temporary file: every .eml has
// its .json and every .json its .eml, and tmp/ is empty.
func noQueueFiles(t *testing.T, queue string) {
	t.Helper()
	for _, d := range []string{queue, filepath.Join(queue, "tmp")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if !en.IsDir() {
				t.Errorf("left in the queue: %s", filepath.Join(d, en.Name()))
			}
		}
	}
}
