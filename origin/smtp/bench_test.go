package smtp

import (
	"testing"

	gosmtp "github.com/emersion/go-smtp"
)

// BenchmarkAcceptMessage measures one SMTP transaction up to the 250 after DATA: spooling,
// two fsyncs and the directory fsync of the durable queue (delivery runs in the background).
func BenchmarkAcceptMessage(b *testing.B) {
	e := startMail(b, envConfig{})
	c, err := gosmtp.Dial(e.a.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := []byte("Subject: bench\r\n\r\na short message body\r\n")
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := c.Mail("bob@outpost.test", nil); err != nil {
			b.Fatal(err)
		}
		if err := c.Rcpt("alice@outpost.test", nil); err != nil {
			b.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			b.Fatal(err)
		}
		w.Write(body)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
