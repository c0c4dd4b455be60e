package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// mailTracker sends mail with unique Message-IDs, reads the mailboxes over POP3 and IMAP
// (deleting what it read, so they stay small) and counts how often each accepted message
// arrived. A message read twice under the same UIDL or UID (a session that broke before its
// deletions applied) counts once: a duplicate is a second copy, under another id.
type mailTracker struct {
	ports soakPorts
	runID string
	n     atomic.Int64

	mu       sync.Mutex
	accepted map[string]string          // Message-ID → recipient, after the 250 to DATA
	arrived  map[string]map[string]bool // Message-ID → mailbox/uid keys it was read under
}

func newMailTracker(p soakPorts) *mailTracker {
	return &mailTracker{ports: p, accepted: map[string]string{}, arrived: map[string]map[string]bool{}}
}

// send sends one message: to alice or bob (local delivery, no AUTH), or from alice (AUTH
// PLAIN) to carol on the second host (relayed through the queue by MX lookup).
func (m *mailTracker) send(ctx context.Context) error {
	n := m.n.Add(1)
	to := soakUsers[int(n)%len(soakUsers)]
	from := "soak@example.net"
	relay := strings.HasSuffix(to.addr, "@remote.test")
	if relay {
		from = soakUsers[0].addr
	}
	id := fmt.Sprintf("<soak-%s-%d@soak.test>", m.runID, n)
	c, err := net.DialTimeout("tcp", m.ports.addr(m.ports.smtp), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cl, err := smtp.NewClient(c, "127.0.0.1")
	if err != nil {
		return smtpErr("greeting", err)
	}
	if err := cl.Hello("soak.test"); err != nil {
		return smtpErr("EHLO", err)
	}
	if relay {
		if err := cl.Auth(smtp.PlainAuth("", soakUsers[0].login, soakPassword, "127.0.0.1")); err != nil {
			return smtpErr("AUTH", err)
		}
	}
	if err := cl.Mail(from); err != nil {
		return smtpErr("MAIL", err)
	}
	if err := cl.Rcpt(to.addr); err != nil {
		return smtpErr("RCPT", err)
	}
	w, err := cl.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: soak %d\r\nMessage-ID: %s\r\nDate: %s\r\n\r\n", from, to.addr, n, id, time.Now().Format(time.RFC1123Z))
	for i := range 20 {
		fmt.Fprintf(w, "line %d of soak message %d\r\n", i, n)
	}
	if err := w.Close(); err != nil {
		return smtpErr("end of DATA", err)
	}
	m.mu.Lock()
	m.accepted[normID(id)] = to.addr
	m.mu.Unlock()
	cl.Quit()
	return nil
}

// smtpErr classes an SMTP error by its reply code.
func smtpErr(step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return failf("smtp-"+strconv.Itoa(te.Code), "%s: %v", step, err)
	}
	return fmt.Errorf("smtp %s: %w", step, err)
}

// arrive records that id was read in mailbox under uid.
func (m *mailTracker) arrive(mailbox, uid, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.arrived[id] == nil {
		m.arrived[id] = map[string]bool{}
	}
	m.arrived[id][mailbox+"/"+uid] = true
}

// missing is the number of accepted messages not read yet.
func (m *mailTracker) missing() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id := range m.accepted {
		if len(m.arrived[id]) == 0 {
			n++
		}
	}
	return n
}

// MailResult is the final mail check.
type MailResult struct {
	Accepted   int      `json:"accepted"`
	Lost       int      `json:"lost"`
	Duplicated int      `json:"duplicated"` // extra copies beyond the first
	Unknown    int      `json:"unknown"`    // read but never accepted (the mailboxes' welcome messages, a send that failed after DATA)
	LostIDs    []string `json:"lost_ids,omitempty"`
	UnknownIDs []string `json:"unknown_ids,omitempty"`
}

// result compares what was accepted with what arrived.
func (m *mailTracker) result() MailResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := MailResult{Accepted: len(m.accepted)}
	for id := range m.accepted {
		switch n := len(m.arrived[id]); {
		case n == 0:
			r.Lost++
			if len(r.LostIDs) < 20 {
				r.LostIDs = append(r.LostIDs, id)
			}
		case n > 1:
			r.Duplicated += n - 1
		}
	}
	for id := range m.arrived {
		if _, ok := m.accepted[id]; !ok {
			r.Unknown++
			if len(r.UnknownIDs) < 20 {
				r.UnknownIDs = append(r.UnknownIDs, id)
			}
		}
	}
	return r
}

// readPOP3 reads and deletes everything in user's maildrop in one POP3 session.
func (m *mailTracker) readPOP3(ctx context.Context, user string) error {
	c, err := net.DialTimeout("tcp", m.ports.addr(m.ports.pop3), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	if _, err := pop3OK(tp, ""); err != nil {
		return err
	}
	for _, cmd := range []string{"USER " + user, "PASS " + soakPassword} {
		if _, err := pop3OK(tp, cmd); err != nil {
			return err
		}
	}
	if _, err := pop3OK(tp, "UIDL"); err != nil {
		return err
	}
	lines, err := tp.ReadDotLines()
	if err != nil {
		return fmt.Errorf("pop3 UIDL: %w", err)
	}
	for _, l := range lines {
		num, uid, ok := parseUIDL(l)
		if !ok {
			return failf("pop3-protocol", "UIDL line %q", l)
		}
		if _, err := pop3OK(tp, "RETR "+num); err != nil {
			return err
		}
		msg, err := mail.ReadMessage(tp.DotReader())
		if err != nil {
			return failf("pop3-protocol", "RETR %s: %v", num, err)
		}
		id := msg.Header.Get("Message-ID")
		if err := drain(msg); err != nil {
			return fmt.Errorf("pop3 RETR %s: %w", num, err)
		}
		m.arrive(user, uid, normID(id))
		if _, err := pop3OK(tp, "DELE "+num); err != nil {
			return err
		}
	}
	_, err = pop3OK(tp, "QUIT")
	return err
}

// drain reads the rest of a message body.
func drain(msg *mail.Message) error {
	_, err := io.Copy(io.Discard, msg.Body)
	return err
}

// normID is a Message-ID without its angle brackets and spaces.
func normID(s string) string { return strings.Trim(strings.TrimSpace(s), "<>") }

// pop3OK sends cmd (none for the greeting) and expects +OK.
func pop3OK(tp *textproto.Conn, cmd string) (string, error) {
	if cmd != "" {
		if err := tp.PrintfLine("%s", cmd); err != nil {
			return "", err
		}
	}
	l, err := tp.ReadLine()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(l, "+OK") {
		name, _, _ := strings.Cut(cmd, " ")
		return "", failf("pop3-err", "%s: %s", name, l)
	}
	return l, nil
}

// parseUIDL parses a UIDL listing line "n uid".
func parseUIDL(l string) (num, uid string, ok bool) {
	f := strings.Fields(l)
	if len(f) != 2 {
		return "", "", false
	}
	if n, err := strconv.Atoi(f[0]); err != nil || n <= 0 {
		return "", "", false
	}
	return f[0], f[1], true
}

// readIMAP reads every message's Message-ID in user's INBOX, then flags what it read
// \Deleted and expunges it, in one IMAP session.
func (m *mailTracker) readIMAP(ctx context.Context, user string) error {
	conn, err := net.DialTimeout("tcp", m.ports.addr(m.ports.imap), 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login(user, soakPassword).Wait(); err != nil {
		return imapErr("LOGIN", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return imapErr("SELECT", err)
	}
	if sel.NumMessages > 0 {
		msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
		if err != nil {
			return imapErr("FETCH", err)
		}
		var uids []imap.UID
		for _, msg := range msgs {
			if msg.Envelope == nil {
				return failf("imap-protocol", "FETCH %d: no envelope", msg.SeqNum)
			}
			m.arrive(user, fmt.Sprintf("%d.%d", sel.UIDValidity, msg.UID), normID(msg.Envelope.MessageID))
			uids = append(uids, msg.UID)
		}
		if len(uids) > 0 {
			if err := c.Store(imap.UIDSetNum(uids...), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				return imapErr("STORE", err)
			}
			if err := c.Expunge().Close(); err != nil {
				return imapErr("EXPUNGE", err)
			}
		}
	}
	if err := c.Logout().Wait(); err != nil {
		return imapErr("LOGOUT", err)
	}
	return nil
}

// imapErr classes an IMAP error: a tagged NO/BAD, or a broken connection.
func imapErr(step string, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return failf("imap-"+strings.ToLower(string(ie.Type)), "%s: %v", step, err)
	}
	return fmt.Errorf("imap %s: %w", step, err)
}
