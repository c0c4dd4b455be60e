package smtp

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/origin/imap"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/outpost-proxy/outpost/origin/pop3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// demoUsers are the demo users with their passwords.
var demoUsers = [][2]string{{"alice@outpost.test", "wonderland"}, {"bob@outpost.test", "builder"}, {"carol@remote.test", "pirates"}}

// hashCache keeps cheap bcrypt hashes across tests.
var hashCache sync.Map

// testDirectory builds the demo users with MinCost hashes (fast under -race).
func testDirectory(t testing.TB) *mailstore.Directory {
	t.Helper()
	d, err := demoDirectory()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// demoDirectory builds the demo users with MinCost hashes.
func demoDirectory() (*mailstore.Directory, error) {
	var specs []mailstore.UserSpec
	for _, u := range demoUsers {
		h, ok := hashCache.Load(u[1])
		if !ok {
			b, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
			if err != nil {
				return nil, err
			}
			h, _ = hashCache.LoadOrStore(u[1], string(b))
		}
		specs = append(specs, mailstore.UserSpec{Address: u[0], PasswordHash: h.(string)})
	}
	return mailstore.NewDirectory(specs)
}

// fakeClock is an injected clock that moves only when the test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// mailEnv is a running mail system: store, queue, host A (outpost.test on 127.0.0.1), host B
// (remote.test on 127.0.0.2, the relay destination) and a POP3 server.
type mailEnv struct {
	dir   string
	store *mailstore.Store
	q     *Queue
	a, b  *Server
	pop   *pop3.Server
	imap  *imap.Server
	clock *fakeClock
	dns   string
	stops []func()
}

// envConfig tweaks startMail.
type envConfig struct {
	clock    bool // inject a fake clock into the queue
	relayNet []string
	maxSize  int64
	dir      string
	tls      *tls.Config // STARTTLS certificate
	tlsOnly  bool        // no AUTH before STARTTLS
	anyFrom  bool        // AllowSenderLoginMismatch
	remote   bool        // host A treats its (loopback) clients as remote ones
	minFree  int64       // QueueOptions.MinFree (0: the default)
}

// startMail starts the whole mail system on loopback with free ports.
func startMail(t testing.TB, cfg envConfig) *mailEnv {
	t.Helper()
	if cfg.dir == "" {
		cfg.dir = t.TempDir()
	}
	if cfg.maxSize == 0 {
		cfg.maxSize = 10 << 20
	}
	e := &mailEnv{dir: cfg.dir}
	store, err := mailstore.Open(filepath.Join(cfg.dir, "boxes"), testDirectory(t))
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	// Host B first: its port is the relay port.
	bLn := listenLoopback(t, "127.0.0.2:0")
	bPort := bLn.Addr().(*net.TCPAddr).Port
	e.dns = startDNS(t)
	qopts := QueueOptions{
		Dir: filepath.Join(cfg.dir, "queue"), Lifetime: time.Hour, RetryInitial: time.Minute, RetryMax: 10 * time.Minute,
		Workers: 2, Relay: &MXRelay{Resolver: e.dns, Port: bPort, Timeout: 20 * time.Second},
		LocalDomains: map[string]map[string]bool{"outpost.test": {"outpost.test": true}, "mx.remote.test": {"remote.test": true}},
		Metrics:      prometheus.NewRegistry(), MinFree: cfg.minFree,
	}
	if cfg.clock {
		e.clock = &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		qopts.Now = e.clock.Now
	}
	e.q, err = NewQueue(store, qopts)
	if err != nil {
		t.Fatal(err)
	}
	var nets []netip.Prefix
	for _, n := range cfg.relayNet {
		nets = append(nets, netip.MustParsePrefix(n))
	}
	host := func(listen, name string, domains, other []string) *Server {
		return NewServer(HostOptions{Listen: listen, Hostname: name, Domains: domains, OtherLocal: other, RelayNetworks: nets,
			MaxMessageSize: cfg.maxSize, MaxRecipients: 5, MaxLineLength: 1000, MaxConnections: 50, MaxAuthFailures: 3,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, TLS: cfg.tls, AllowInsecureAuth: !cfg.tlsOnly,
			AllowSenderLoginMismatch: cfg.anyFrom}, e.q, nil)
	}
	e.a = host("127.0.0.1:0", "outpost.test", []string{"outpost.test"}, []string{"remote.test"})
	if cfg.remote {
		e.a.isLocal = func(net.Addr) bool { return false }
	}
	bLn.Close() // re-bound by the server just below (127.0.0.2 has no other users)
	e.b = host(net.JoinHostPort("127.0.0.2", strconv.Itoa(bPort)), "mx.remote.test", []string{"remote.test"}, []string{"outpost.test"})
	e.pop, err = pop3.New(pop3.Options{Listen: "127.0.0.1:0", AllowInsecureAuth: true, MaxAuthFailures: 3}, store)
	if err != nil {
		t.Fatal(err)
	}
	e.imap, err = imap.New(imap.Options{Listen: "127.0.0.1:0", AllowInsecureAuth: true}, store)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface {
		Listen(context.Context) error
		Serve(context.Context) error
		Shutdown(context.Context) error
	}{e.q, e.a, e.b, e.pop, e.imap} {
		if err := c.Listen(context.Background()); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Serve(context.Background()) }()
		e.stops = append([]func(){func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = c.Shutdown(ctx)
			<-done
		}}, e.stops...)
	}
	t.Cleanup(e.stop)
	return e
}

// stop shuts every component down, in reverse start order (idempotent): a restart test
// stops one environment and starts another on the same directory.
func (e *mailEnv) stop() {
	for _, f := range e.stops {
		f()
	}
	e.stops = nil
}

// listenLoopback binds addr or skips when the address is unusable.
func listenLoopback(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s (needs 127.0.0.0/8 on lo): %v", addr, err)
	}
	return ln
}

// startDNS runs a tiny authoritative server: remote.test MX mx.remote.test → 127.0.0.2;
// down.test MX mx.down.test → 127.0.0.3 (nothing listens there); everything else NXDOMAIN.
func startDNS(t testing.TB) string {
	t.Helper()
	zone := map[string][]string{
		"remote.test. MX":      {"remote.test. 60 IN MX 10 mx.remote.test."},
		"mx.remote.test. A":    {"mx.remote.test. 60 IN A 127.0.0.2"},
		"down.test. MX":        {"down.test. 60 IN MX 10 mx.down.test."},
		"mx.down.test. A":      {"mx.down.test. 60 IN A 127.0.0.3"},
		"nullmx.test. MX":      {"nullmx.test. 60 IN MX 0 ."},
		"mx.remote.test. AAAA": nil, "mx.down.test. AAAA": nil,
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		rrs, ok := zone[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]
		known := ok
		for k := range zone {
			if strings.HasPrefix(k, strings.ToLower(q.Name)+" ") {
				known = true
			}
		}
		if !known {
			m.Rcode = dns.RcodeNameError
		}
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// inbox returns the user's INBOX messages, read fresh from the store.
func (e *mailEnv) inbox(t *testing.T, addr string) ([]mailstore.Message, *mailstore.Mailbox) {
	t.Helper()
	u, ok := e.store.Directory().Lookup(addr)
	if !ok {
		t.Fatalf("no user %s", addr)
	}
	box, err := e.store.Mailbox(u, mailstore.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := box.Scan()
	if err != nil {
		t.Fatal(err)
	}
	return snap.Messages, box
}

// waitInbox polls until the user's INBOX has n messages (delivery is asynchronous) and
// returns their contents.
func (e *mailEnv) waitInbox(t *testing.T, addr string, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs, box := e.inbox(t, addr)
		if len(msgs) >= n {
			var out [][]byte
			for _, m := range msgs {
				data, err := box.ReadAll(m.Key, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, data)
			}
			if len(msgs) > n {
				t.Fatalf("%s has %d messages, want %d", addr, len(msgs), n)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d messages after 20s, want %d; queue: %+v", addr, len(msgs), n, e.q.List())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitQueue polls until cond holds for the queue listing.
func (e *mailEnv) waitQueue(t *testing.T, what string, cond func([]Envelope) bool) []Envelope {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := e.q.List()
		if cond(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue never reached %s: %+v", what, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a command with a 60s deadline and fails the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return string(clienttest.Run(t, 60*time.Second, name, args...))
}

// hostPort splits a listener address for command-line clients.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// pyClient runs testdata/mailclient.py.
func pyClient(t *testing.T, args ...string) string {
	t.Helper()
	py := clienttest.Need(t, "python3", "python3")
	return run(t, py, append([]string{"testdata/mailclient.py"}, args...)...)
}

// writeTemp writes data to a temporary file and returns its path.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
