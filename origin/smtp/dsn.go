package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"time"
)

// sendDSN queues an RFC 3464 delivery status notification to env's sender for the failed
// recipients. It is itself a queued message with a null reverse-path, so it is never bounced.
func (q *Queue) sendDSN(env *Envelope, failed []*Recipient, now time.Time) error {
	headers, err := q.originalHeaders(env.ID)
	if err != nil {
		headers = []byte("X-Outpost-Note: the original message could not be read\r\n")
	}
	sp, err := q.NewSpool()
	if err != nil {
		return err
	}
	if _, err := sp.Write(buildDSN(env, failed, headers, sp.ID, now)); err != nil {
		sp.Abort()
		return fmt.Errorf("smtp: bounce: %w", err)
	}
	return sp.Commit(&Envelope{
		From: "", Host: env.Host, Arrived: now, DSN: true,
		Rcpts: []*Recipient{{Addr: env.From, Local: q.isLocal(env.Host, env.From), State: StateQueued, Next: now}},
	})
}

// originalHeaders reads the header block of a queued message (at most 64 KiB).
func (q *Queue) originalHeaders(id string) ([]byte, error) {
	f, err := q.open(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	br := bufio.NewReader(io.LimitReader(f, 64<<10))
	for {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" {
			break
		}
		out.WriteString(line)
		if err != nil {
			break
		}
	}
	return out.Bytes(), nil
}

// buildDSN renders the notification: a multipart/report with a human-readable part, the
// message/delivery-status part and the original message's headers (text/rfc822-headers).
func buildDSN(env *Envelope, failed []*Recipient, headers []byte, id string, now time.Time) []byte {
	boundary := "=_outpost-dsn-" + id
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", "Mail Delivery System <MAILER-DAEMON@"+env.Host+">")
	h("To", "<"+env.From+">")
	h("Subject", "Undelivered Mail Returned to Sender")
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+".dsn@"+env.Host+">")
	h("Auto-Submitted", "auto-replied")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a MIME-encapsulated delivery status notification.\r\n")
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\nYour message could not be delivered to one or more recipients:\r\n\r\n", env.Host)
	for _, r := range failed {
		fmt.Fprintf(&b, "<%s>: %s\r\n", r.Addr, oneLine(r.LastError))
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\nX-Outpost-Queue-ID: %s\r\nArrival-Date: %s\r\n", env.Host, env.ID, env.Arrived.Format(time.RFC1123Z))
	for _, r := range failed {
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n", r.Addr, dsnStatus(r.Status))
		fmt.Fprintf(&b, "Diagnostic-Code: smtp; %s\r\nLast-Attempt-Date: %s\r\n", oneLine(r.LastError), now.Format(time.RFC1123Z))
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
	b.Write(headers)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

// dsnStatus makes a final status 5.x.x (RFC 3464 requires a failed action to carry one).
func dsnStatus(s string) string {
	if strings.HasPrefix(s, "4.") {
		return "5." + s[2:]
	}
	if s == "" {
		return "5.0.0"
	}
	return s
}

// oneLine flattens a diagnostic into one header-safe line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 900 {
		s = s[:900]
	}
	return textproto.TrimString(s)
}
