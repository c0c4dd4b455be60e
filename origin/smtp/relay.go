package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// ReadCloser is the message data a relay reads.
type ReadCloser = io.ReadCloser

// RelayMessage is one SMTP transaction to one destination domain.
type RelayMessage struct {
	// Helo is our name in EHLO.
	Helo string
	// From is the reverse-path (empty for bounces).
	From string
	// Domain is the recipients' domain, whose MX is looked up.
	Domain string
	Rcpts  []string
	// Open returns the message data (called once per attempt).
	Open func() (ReadCloser, error)
}

// Relayer delivers to another mail host and reports per recipient (nil: accepted).
type Relayer interface {
	Relay(ctx context.Context, m RelayMessage) map[string]error
}

// MXRelay is the relay client: MX lookup, then A/AAAA, then SMTP to each address in preference
// order until one takes the transaction.
type MXRelay struct {
	// Resolver is the DNS server (host:port) asked for MX and address records.
	Resolver string
	// Port is the destination SMTP port.
	Port int
	// Timeout bounds one attempt, lookups included.
	Timeout time.Duration
}

// Relay performs one delivery attempt for m.
func (r *MXRelay) Relay(ctx context.Context, m RelayMessage) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	all := func(err error) map[string]error {
		out := map[string]error{}
		for _, a := range m.Rcpts {
			out[a] = err
		}
		return out
	}
	hosts, err := r.lookupMX(ctx, m.Domain)
	if err != nil {
		return all(err)
	}
	var last error = &DeliveryError{Status: "4.4.4", Reply: "no address for the mail exchangers of " + m.Domain}
	for _, h := range hosts {
		addrs, err := r.lookupAddrs(ctx, h)
		if err != nil {
			last = err
			continue
		}
		for _, a := range addrs {
			res, err := r.transact(ctx, net.JoinHostPort(a, strconv.Itoa(r.Port)), m)
			if err == nil {
				return res
			}
			last = err
		}
	}
	return all(last)
}

// lookupMX returns the mail exchangers of domain, best preference first. No MX records means
// the domain itself (RFC 5321 5.1); a null MX (RFC 7505) or NXDOMAIN fails permanently.
func (r *MXRelay) lookupMX(ctx context.Context, domain string) ([]string, error) {
	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var mxs []*dns.MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}
	if len(mxs) == 0 {
		return []string{domain}, nil
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Preference < mxs[j].Preference })
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, &DeliveryError{Permanent: true, Status: "5.1.10", Reply: "556 5.1.10 " + domain + " accepts no mail (null MX)"}
	}
	out := make([]string, 0, len(mxs))
	for _, mx := range mxs {
		out = append(out, strings.TrimSuffix(mx.Mx, "."))
	}
	return out, nil
}

// lookupAddrs returns host's IPv4 then IPv6 addresses.
func (r *MXRelay) lookupAddrs(ctx context.Context, host string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{host}, nil
	}
	var out []string
	var firstErr error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, t)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		for _, rr := range resp.Answer {
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, a.A.String())
			case *dns.AAAA:
				out = append(out, a.AAAA.String())
			}
		}
	}
	if len(out) == 0 {
		if firstErr == nil {
			firstErr = &DeliveryError{Status: "4.4.4", Reply: "mail exchanger " + host + " has no address"}
		}
		return nil, firstErr
	}
	return out, nil
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// query asks the resolver, over UDP and again over TCP when the answer is truncated.
func (r *MXRelay) query(ctx context.Context, name string, t uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 5 * time.Second}
	resp, _, err := c.ExchangeContext(ctx, m, r.Resolver)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, r.Resolver)
	}
	if err != nil {
		return nil, &DeliveryError{Status: "4.4.3", Reply: fmt.Sprintf("DNS lookup of %s %s failed: %v", name, dns.TypeToString[t], err)}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
		return resp, nil
	case dns.RcodeNameError:
		return nil, &DeliveryError{Permanent: true, Status: "5.1.2", Reply: "550 5.1.2 domain " + name + " does not exist"}
	default:
		return nil, &DeliveryError{Status: "4.4.3", Reply: fmt.Sprintf("DNS lookup of %s %s: %s", name, dns.TypeToString[t], dns.RcodeToString[resp.Rcode])}
	}
}

// transact runs one SMTP transaction at addr. A nil error means the per-recipient results are
// final for this attempt; an error means "try the next address".
func (r *MXRelay) transact(ctx context.Context, addr string, m RelayMessage) (map[string]error, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &DeliveryError{Status: "4.4.1", Reply: "connect to " + addr + ": " + err.Error()}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // shutdown interrupts the dialogue
	defer stop()
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(m.Helo); err != nil {
		return nil, replyError(addr, err)
	}
	if err := c.Mail(m.From, nil); err != nil {
		if de := replyError(addr, err); de.Permanent {
			return allErr(m.Rcpts, de), nil
		}
		return nil, replyError(addr, err)
	}
	out := map[string]error{}
	var accepted []string
	for _, rcpt := range m.Rcpts {
		if err := c.Rcpt(rcpt, nil); err != nil {
			out[rcpt] = replyError(addr, err)
			continue
		}
		accepted = append(accepted, rcpt)
	}
	if len(accepted) == 0 {
		_ = c.Quit()
		return out, nil
	}
	if err := r.sendData(c, m); err != nil {
		de := replyError(addr, err)
		for _, a := range accepted {
			out[a] = de
		}
		return out, nil
	}
	for _, a := range accepted {
		out[a] = nil
	}
	_ = c.Quit()
	return out, nil
}

// sendData streams the message after DATA.
func (r *MXRelay) sendData(c *gosmtp.Client, m RelayMessage) error {
	body, err := m.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// allErr gives every recipient the same error.
func allErr(rcpts []string, err error) map[string]error {
	out := map[string]error{}
	for _, a := range rcpts {
		out[a] = err
	}
	return out
}

// replyError turns an SMTP reply or transport error into a DeliveryError.
func replyError(addr string, err error) *DeliveryError {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		status := fmt.Sprintf("%d.0.0", se.Code/100)
		if se.EnhancedCode != gosmtp.NoEnhancedCode && se.EnhancedCode != gosmtp.EnhancedCodeNotSet {
			status = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return &DeliveryError{Permanent: se.Code >= 500, Status: status,
			Reply: fmt.Sprintf("%s said: %d %s %s", addr, se.Code, status, se.Message)}
	}
	return &DeliveryError{Status: "4.4.2", Reply: addr + ": " + err.Error()}
}
