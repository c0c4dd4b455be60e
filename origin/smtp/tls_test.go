package smtp

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/outpost-proxy/outpost/internal/testtls"
)

// TestStartTLSThenAuth: with a certificate and insecure auth off, AUTH is offered only after
// STARTTLS; then an authenticated client may relay.
func TestStartTLSThenAuth(t *testing.T) {
	e := startMail(t, envConfig{tls: testtls.ServerConfig(t), tlsOnly: true})
	c, err := gosmtp.Dial(e.a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("tls.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered before TLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "wonderland")); err == nil {
		t.Fatal("AUTH accepted before TLS")
	}
	conn, err := net.Dial("tcp", e.a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err = gosmtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("after STARTTLS AUTH = %v %q", ok, mechs)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "wonderland")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@outpost.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("carol@remote.test", nil); err != nil {
		t.Fatalf("authenticated relay refused: %v", err)
	}
	w, _ := c.Data()
	w.Write([]byte("Subject: over tls\r\n\r\nsecret\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	msg := e.waitInbox(t, "carol@remote.test", 1)[0]
	if !strings.Contains(string(msg), "with ESMTPSA") {
		t.Fatalf("Received header does not record TLS+AUTH:\n%s", msg)
	}
}
