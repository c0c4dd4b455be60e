package bench

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer is an httptest TLS server (HTTP/2 enabled when h2) that counts its connections,
// with its certificate written to a PEM file for --cacert.
type tlsServer struct {
	*httptest.Server
	conns  atomic.Int64
	caFile string
}

func newTLSServer(t *testing.T, h http.Handler, h2 bool) *tlsServer {
	return startTLSServer(t, h, h2, nil)
}

// startTLSServer is newTLSServer with the server's TLS configuration given (nil: httptest's).
func startTLSServer(t *testing.T, h http.Handler, h2 bool, conf *tls.Config) *tlsServer {
	t.Helper()
	s := &tlsServer{Server: httptest.NewUnstartedServer(h)}
	s.EnableHTTP2, s.TLS = h2, conf
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the tests make fail
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(s.caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLoadH2Multiplexes: one connection with 8 streams has 8 requests in flight at once on
// the server (each of the first 8 waits until all 8 are there), over TLS 1.3 with ALPN h2,
// and the result is the HTTP/1 load's report.
func TestLoadH2Multiplexes(t *testing.T) {
	const streams = 8
	var inflight, peak atomic.Int64
	var protoErr atomic.Value
	all := make(chan struct{})
	var once sync.Once
	srv := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			protoErr.Store(r.Proto)
		}
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if n == streams {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second): // the test fails on the peak below
		}
		w.Header().Set("Cache-Status", "Outpost; hit")
		w.Write(make([]byte, 1024))
	}), true)
	o := baseLoad(srv.URL + "/obj")
	o.H2, o.Connections, o.Streams, o.Requests = true, 1, streams, 400
	o.TLS.CACert = srv.caFile
	r, err := RunLoad(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if v := protoErr.Load(); v != nil {
		t.Fatalf("server saw %v, want HTTP/2.0", v)
	}
	if r.Requests != 400 || r.Status["200"] != 400 || len(r.Errors) != 0 {
		t.Fatalf("requests %d, status %v, errors %v; want 400 × 200", r.Requests, r.Status, r.Errors)
	}
	if peak.Load() != streams {
		t.Errorf("peak %d requests in flight on the server, want %d", peak.Load(), streams)
	}
	if srv.conns.Load() != 1 || r.Handshakes != 1 {
		t.Errorf("%d server connections, %d handshakes; want 1 of each", srv.conns.Load(), r.Handshakes)
	}
	if r.Protocol != "HTTP/2 over TLS" || r.TLSVersion != "TLS 1.3" || r.Streams != streams {
		t.Errorf("protocol %q, TLS %q, streams %d", r.Protocol, r.TLSVersion, r.Streams)
	}
	if r.CacheHits != 400 || r.Bytes < 400*1024 || r.Latency.Count != 400 || r.Latency.P50 <= 0 {
		t.Errorf("hits %d, bytes %d, latency %+v", r.CacheHits, r.Bytes, r.Latency)
	}
}

// TestLoadH2 runs the HTTP/2 load in its other shapes: several connections, a duration, the
// open loop, Zipf URLs, --insecure, h2c with prior knowledge.
func TestLoadH2(t *testing.T) {
	h := testOriginHandler()
	tlsSrv := newTLSServer(t, h, true)
	h2c := httptest.NewUnstartedServer(h)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	t.Cleanup(h2c.Close)
	for _, tc := range []struct {
		name string
		edit func(*LoadOptions)
	}{
		{"connections x streams", func(o *LoadOptions) { o.Connections, o.Streams = 3, 4 }},
		{"insecure", func(o *LoadOptions) { o.TLS.CACert, o.TLS.Insecure = "", true }},
		{"duration", func(o *LoadOptions) { o.Requests, o.Duration = 0, 200*time.Millisecond }},
		{"open loop", func(o *LoadOptions) { o.Rate, o.Requests, o.Streams = 2000, 100, 4 }},
		{"zipf", func(o *LoadOptions) { o.URLs, o.ZipfK = []string{tlsSrv.URL + "/bytes/{i}"}, 50 }},
		{"x25519 only", func(o *LoadOptions) { o.TLS.Curves, o.TLS.TLS13 = []string{"x25519"}, true }},
		{"h2c prior knowledge", func(o *LoadOptions) { o.URLs = []string{h2c.URL + "/bytes/100"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := baseLoad(tlsSrv.URL + "/bytes/100")
			o.H2, o.Streams, o.Requests = true, 2, 200
			o.TLS.CACert = tlsSrv.caFile
			tc.edit(&o)
			r, err := RunLoad(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests == 0 || o.Requests > 0 && r.Requests != o.Requests || r.Status["200"] != r.Requests || len(r.Errors) != 0 {
				t.Fatalf("requests %d, status %v, errors %v", r.Requests, r.Status, r.Errors)
			}
		})
	}
}

// TestLoadHTTPSNewConnections: HTTPS with a new connection per request makes one full
// handshake per request and resumes none, though the server issues session tickets.
func TestLoadHTTPSNewConnections(t *testing.T) {
	srv := newTLSServer(t, testOriginHandler(), false)
	o := baseLoad(srv.URL + "/bytes/1024")
	o.KeepAlive, o.Requests = false, 60
	o.TLS.CACert = srv.caFile
	r, err := RunLoad(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 60 || len(r.Errors) != 0 {
		t.Fatalf("requests %d, errors %v", r.Requests, r.Errors)
	}
	if r.Handshakes != 60 || r.Resumed != 0 || srv.conns.Load() != 60 {
		t.Errorf("%d handshakes, %d resumed, %d server connections; want 60, 0, 60", r.Handshakes, r.Resumed, srv.conns.Load())
	}
	if r.Protocol != "HTTP/1.1 over TLS" || r.TLSVersion != "TLS 1.3" {
		t.Errorf("protocol %q, TLS %q", r.Protocol, r.TLSVersion)
	}
}

// TestLoadTLSErrors: an untrusted certificate, or a server that does not offer h2, is counted
// as an error of its kind, not a hang or a panic.
func TestLoadTLSErrors(t *testing.T) {
	h1only := newTLSServer(t, testOriginHandler(), false)
	noALPN := startTLSServer(t, testOriginHandler(), false, &tls.Config{NextProtos: []string{}})
	for _, tc := range []struct {
		name string
		edit func(*LoadOptions)
		kind string
	}{
		{"untrusted", func(o *LoadOptions) { o.TLS.CACert = "" }, "tls"},
		// The Go server refuses the handshake (no_application_protocol).
		{"h2 refused in ALPN", func(o *LoadOptions) { o.H2 = true }, "tls"},
		{"no ALPN", func(o *LoadOptions) {
			o.H2, o.URLs, o.TLS.CACert = true, []string{noALPN.URL + "/bytes/1"}, noALPN.caFile
		}, "no h2 (ALPN)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := baseLoad(h1only.URL + "/bytes/1")
			o.Connections, o.Requests = 1, 5
			o.TLS.CACert = h1only.caFile
			tc.edit(&o)
			r, err := RunLoad(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests != 0 || r.Errors[tc.kind] != 5 {
				t.Errorf("requests %d, errors %v; want 5 %q errors", r.Requests, r.Errors, tc.kind)
			}
		})
	}
}
