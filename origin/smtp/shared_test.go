package smtp

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSharedMailboxAcrossProtocols: "reading from the same mailbox at home and at the office".
// An IMAP session idles on alice's INBOX; mail sent with smtplib shows up as EXISTS during
// IDLE; a POP3 RETR marks it \Seen for IMAP; a POP3 DELE+QUIT expunges it in IMAP.
func TestSharedMailboxAcrossProtocols(t *testing.T) {
	e := startMail(t, envConfig{})
	c, err := net.Dial("tcp", e.imap.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	readLine := func() string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("imap read: %v", err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	until := func(prefix string) []string {
		var seen []string
		for {
			l := readLine()
			seen = append(seen, l)
			if strings.HasPrefix(l, prefix) {
				return seen
			}
		}
	}
	readLine() // greeting
	fmt.Fprintf(c, "a LOGIN alice wonderland\r\n")
	until("a OK")
	fmt.Fprintf(c, "b SELECT INBOX\r\n")
	until("b OK")
	fmt.Fprintf(c, "c IDLE\r\n")
	until("+")

	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "bob@outpost.test", "alice@outpost.test", "home and office")
	until("* 1 EXISTS")
	fmt.Fprintf(c, "DONE\r\n")
	until("c OK")

	pHost, pPort := hostPort(t, e.pop.Addr())
	pyClient(t, "popretr", pHost, pPort, "alice", "wonderland", "1", t.TempDir()+"/m.eml")
	fmt.Fprintf(c, "d NOOP\r\n")
	if got := strings.Join(until("d OK"), "\n"); !strings.Contains(got, `\Seen`) {
		t.Fatalf("IMAP did not see POP3's RETR as \\Seen:\n%s", got)
	}

	pc, err := net.Dial("tcp", e.pop.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fmt.Fprintf(pc, "USER alice\r\nPASS wonderland\r\nDELE 1\r\nQUIT\r\n")
	pbr := bufio.NewReader(pc)
	for {
		l, err := pbr.ReadString('\n')
		if err != nil {
			t.Fatalf("pop3: %v", err)
		}
		if strings.Contains(l, "signing off") {
			break
		}
	}
	fmt.Fprintf(c, "e NOOP\r\n")
	if got := strings.Join(until("e OK"), "\n"); !strings.Contains(got, "* 1 EXPUNGE") {
		t.Fatalf("IMAP did not see POP3's deletion:\n%s", got)
	}
}
