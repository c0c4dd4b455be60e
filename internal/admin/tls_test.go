package admin

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/democa"
)

// TestUseTLS: with UseTLS the admin listener serves HTTPS, HTTP/2 and HTTP/1.1, with the given
// certificates, and refuses plain HTTP.
func TestUseTLS(t *testing.T) {
	ca, err := democa.New("admin test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s := New("127.0.0.1:0", http.NewServeMux(), prometheus.NewRegistry(), nil, slog.New(slog.DiscardHandler))
	s.UseTLS(&tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12})
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Shutdown(context.Background())
	addr := strings.TrimPrefix(s.Addrs()[0], "tcp ")
	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := c.Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := map[bool]int{true: 2, false: 1}[h2]; resp.StatusCode != 200 || resp.ProtoMajor != want || string(body) != "ok\n" {
			t.Errorf("h2=%v: %s %d %q", h2, resp.Proto, resp.StatusCode, body)
		}
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS admin listener: %d", resp.StatusCode)
		}
	}
}
