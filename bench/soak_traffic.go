package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// soakFail is a failed operation with its error class.
type soakFail struct{ class, detail string }

func (f *soakFail) Error() string { return f.class + ": " + f.detail }

func failf(class, format string, args ...any) error {
	return &soakFail{class: class, detail: fmt.Sprintf(format, args...)}
}

// classOf names the class of an operation's error.
func classOf(err error) string {
	var f *soakFail
	var ne net.Error
	switch {
	case errors.As(err, &f):
		return f.class
	case errors.Is(err, io.ErrUnexpectedEOF):
		return classCut
	case errors.As(err, &ne) && ne.Timeout():
		return classTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE):
		return classReset
	case errors.Is(err, errProtocol):
		return "protocol"
	}
	return "error"
}

// soakObject is a URL whose body the soak knows: fetched through the proxy during the run and
// compared with the origin's bytes at the end.
type soakObject struct {
	path string // origin-form for web objects, the ftp:// URL for FTP files
	ftp  bool
	sum  [32]byte
}

// soakTraffic generates the soak's traffic mix against a running suite.
type soakTraffic struct {
	rec     *soakRecorder
	ports   soakPorts
	runID   string
	echo    *echoTarget
	edges   []*soakEdge
	client  *http.Client // reverse-route requests to the proxy
	hits    []soakObject
	ftps    []soakObject
	sizeSum map[int][32]byte // /bytes/N body hashes, read from the origin directly
	mail    *mailTracker

	missN  atomic.Int64
	mu     sync.Mutex
	misses []soakObject // the most recent misses, for the final check
}

// missSize is the size of miss objects; the warm-up fills the cache with them.
const missSize = 2048

// maxMissesKept bounds the misses re-checked at the end.
const maxMissesKept = 2000

// hitSizes are the sizes of the hit set's objects.
var hitSizes = []int{1024, 4096, 16384, 65536}

// newSoakTraffic prepares the traffic: the object hashes from the origin and the FTP files.
func newSoakTraffic(rec *soakRecorder, ports soakPorts, runID string, echo *echoTarget, edges []*soakEdge, ftpFiles map[string][]byte) (*soakTraffic, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     2 * time.Second,
	}
	t := &soakTraffic{rec: rec, ports: ports, runID: runID, echo: echo, edges: edges,
		client:  &http.Client{Transport: tr, Timeout: 15 * time.Second},
		sizeSum: map[int][32]byte{}, mail: newMailTracker(ports)}
	for _, n := range append(hitSizes, missSize) {
		sum, err := t.originSum(n)
		if err != nil {
			return nil, err
		}
		t.sizeSum[n] = sum
	}
	for i := range 48 {
		n := hitSizes[i%len(hitSizes)]
		t.hits = append(t.hits, soakObject{path: fmt.Sprintf("/bytes/%d?obj=%d", n, i), sum: t.sizeSum[n]})
	}
	for name, b := range ftpFiles {
		t.ftps = append(t.ftps, soakObject{path: "ftp://" + ports.addr(ports.ftp) + "/soak/" + name, ftp: true, sum: sha256.Sum256(b)})
	}
	return t, nil
}

// originSum fetches /bytes/n from the origin directly.
func (t *soakTraffic) originSum(n int) ([32]byte, error) {
	resp, err := t.client.Get(fmt.Sprintf("http://%s/bytes/%d", t.ports.addr(t.ports.web), n))
	if err != nil {
		return [32]byte{}, fmt.Errorf("origin /bytes/%d: %w", n, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || len(b) != n {
		return [32]byte{}, fmt.Errorf("origin /bytes/%d: %s, %d bytes, %v", n, resp.Status, len(b), err)
	}
	return sha256.Sum256(b), nil
}

// writeFTPFiles creates the files the ftp:// fetches read, in the anonymous FTP home under
// data_dir (the FTP server seeds nothing there once it exists).
func writeFTPFiles(dataDir string) (map[string][]byte, error) {
	dir := filepath.Join(dataDir, "ftp", "anonymous", "soak")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for i, n := range []int{512, 3000, 20000, 70000} {
		b := make([]byte, n)
		rand.Read(b)
		name := fmt.Sprintf("f%d.bin", i)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// get fetches path through the proxy's reverse route (host "" = the default route).
func (t *soakTraffic) get(ctx context.Context, path, host string, hdr http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+t.ports.addr(t.ports.proxy)+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// checkBody fails unless status is 200 and body hashes to sum.
func checkBody(what string, status int, body []byte, sum [32]byte) error {
	if status != 200 {
		return failf(strconv.Itoa(status), "%s: status %d", what, status)
	}
	if sha256.Sum256(body) != sum {
		return failf(classCorrupt, "%s: %d bytes that differ from the origin's", what, len(body))
	}
	return nil
}

func (t *soakTraffic) hit(ctx context.Context, r *mrand.Rand) error {
	o := t.hits[r.IntN(len(t.hits))]
	st, b, err := t.get(ctx, o.path, "", nil)
	if err != nil {
		return err
	}
	return checkBody("GET "+o.path, st, b, o.sum)
}

func (t *soakTraffic) miss(ctx context.Context, _ *mrand.Rand) error {
	o := soakObject{path: fmt.Sprintf("/bytes/%d?miss=%s-%d", missSize, t.runID, t.missN.Add(1)), sum: t.sizeSum[missSize]}
	st, b, err := t.get(ctx, o.path, "", nil)
	if err != nil {
		return err
	}
	if err := checkBody("GET "+o.path, st, b, o.sum); err != nil {
		return err
	}
	t.mu.Lock()
	t.misses = append(t.misses, o)
	if len(t.misses) > 2*maxMissesKept {
		t.misses = append(t.misses[:0], t.misses[len(t.misses)-maxMissesKept:]...)
	}
	t.mu.Unlock()
	return nil
}

func (t *soakTraffic) faulty(ctx context.Context, r *mrand.Rand) error {
	path := fmt.Sprintf("/f/%d", r.IntN(16))
	st, b, err := t.get(ctx, path, faultHost, nil)
	if err != nil {
		return err
	}
	return checkBody("GET "+faultHost+path, st, b, sha256.Sum256(faultBody(path)))
}

func (t *soakTraffic) purge(ctx context.Context, r *mrand.Rand) error {
	o := t.hits[r.IntN(len(t.hits))]
	req, err := http.NewRequestWithContext(ctx, "PURGE", "http://"+t.ports.addr(t.ports.proxy)+o.path, nil)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 404 {
		return failf(strconv.Itoa(resp.StatusCode), "PURGE %s: %s", o.path, resp.Status)
	}
	return nil
}

// rawConn is one persistent connection to the proxy for hand-written requests.
type rawConn struct {
	c  net.Conn
	rr *respReader
}

func (t *soakTraffic) dialRaw() (*rawConn, error) {
	c, err := net.DialTimeout("tcp", t.ports.addr(t.ports.proxy), 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, rr: newRespReader(c, true)}, nil
}

// exchange writes reqs at once (pipelined) and reads one response per request.
func (rc *rawConn) exchange(reqs []byte, n int) ([]response, error) {
	rc.c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := rc.c.Write(reqs); err != nil {
		return nil, err
	}
	out := make([]response, n)
	for i := range out {
		if err := rc.rr.read(false, &out[i]); err != nil {
			return nil, fmt.Errorf("response %d of %d: %w", i+1, n, err)
		}
		out[i].body = bytes.Clone(out[i].body)
	}
	return out, nil
}

// pipelineDepth is the number of requests of one pipelined burst.
const pipelineDepth = 8

func (t *soakTraffic) pipeline(ctx context.Context, r *mrand.Rand) error {
	rc, err := t.dialRaw()
	if err != nil {
		return err
	}
	defer rc.c.Close()
	var reqs []byte
	objs := make([]soakObject, pipelineDepth)
	for i := range objs {
		objs[i] = t.hits[r.IntN(len(t.hits))]
		reqs = append(reqs, "GET "+objs[i].path+" HTTP/1.1\r\nHost: "+t.ports.addr(t.ports.proxy)+"\r\n\r\n"...)
	}
	resps, err := rc.exchange(reqs, len(objs))
	if err != nil {
		return err
	}
	for i, o := range objs {
		if err := checkBody("pipelined GET "+o.path, resps[i].status, resps[i].body, o.sum); err != nil {
			return err
		}
	}
	return nil
}

// ftpFetch fetches one ftp:// file through the forward proxy on the worker's connection.
func (t *soakTraffic) ftpFetch(ctx context.Context, r *mrand.Rand, rc **rawConn) error {
	o := t.ftps[r.IntN(len(t.ftps))]
	if *rc == nil {
		c, err := t.dialRaw()
		if err != nil {
			return err
		}
		*rc = c
	}
	req := "GET " + o.path + " HTTP/1.1\r\nHost: " + t.ports.addr(t.ports.ftp) + "\r\n\r\n"
	resps, err := (*rc).exchange([]byte(req), 1)
	if err != nil || resps[0].close {
		(*rc).c.Close()
		*rc = nil
	}
	if err != nil {
		return err
	}
	return checkBody("GET "+o.path, resps[0].status, resps[0].body, o.sum)
}

// connect opens a CONNECT tunnel to the TLS echo target, shakes hands through it and checks
// that 16 KiB come back unchanged.
func (t *soakTraffic) connect(ctx context.Context, _ *mrand.Rand) error {
	c, err := net.DialTimeout("tcp", t.ports.addr(t.ports.proxy), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	target := t.echo.addr()
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return failf(strconv.Itoa(resp.StatusCode), "CONNECT %s: %s", target, resp.Status)
	}
	if br.Buffered() > 0 {
		return failf("protocol", "CONNECT %s: %d bytes after the 200 head", target, br.Buffered())
	}
	tc := tls.Client(c, &tls.Config{RootCAs: t.echo.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return failf("tls", "handshake through the tunnel: %v", err)
	}
	out := make([]byte, 16<<10)
	rand.Read(out)
	go tc.Write(out)
	in := make([]byte, len(out))
	if _, err := io.ReadFull(tc, in); err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return failf(classCorrupt, "tunnel echoed different bytes")
	}
	return nil
}

// dnsDetect bounds how long the suite's DNS may still hand out an edge that went down: fall ×
// interval + timeout of its health checks, plus slack for a loaded machine.
const dnsDetect = 2*time.Second + 500*time.Millisecond + 2*time.Second

// dnsRise bounds how long after an edge is back the DNS may still steer around it.
const dnsRise = 2*time.Second + 500*time.Millisecond + 2*time.Second

// dnsQuery asks for www.cdn.test A with a client subnet of one region and checks the answer:
// the region's edge while it is up (and has been for dnsRise), another edge while it is down,
// never an edge that has been down for longer than dnsDetect, and the ECS option echoed.
func (t *soakTraffic) dnsQuery(ctx context.Context, r *mrand.Rand) error {
	i := r.IntN(len(soakRegions))
	m := new(dns.Msg)
	m.SetQuestion("www.cdn.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP(soakRegions[i].subnet).To4()})
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, t.ports.addr(t.ports.dns))
	if err != nil {
		return err
	}
	if in.Rcode != dns.RcodeSuccess || len(in.Answer) == 0 {
		return failf("rcode-"+dns.RcodeToString[in.Rcode], "www.cdn.test A from %s: %d answers", soakRegions[i].subnet, len(in.Answer))
	}
	a, ok := in.Answer[0].(*dns.A)
	if !ok {
		return failf("protocol", "answer %v", in.Answer[0])
	}
	if !hasECS(in) {
		return failf("no-ecs", "www.cdn.test A from %s: no EDNS Client Subnet in the answer", soakRegions[i].subnet)
	}
	var got *soakEdge
	for _, e := range t.edges {
		if e.ip() == a.A.String() {
			got = e
		}
	}
	if got == nil {
		return failf("not-an-edge", "www.cdn.test A from %s: %s", soakRegions[i].subnet, a.A)
	}
	if d := got.down(); !d.IsZero() {
		return failf(classDownEdge, "www.cdn.test A from %s: %s, down for %v", soakRegions[i].subnet, got.name, time.Since(d).Round(time.Millisecond))
	}
	want := t.edges[i]
	if got != want && want.down().IsZero() && time.Since(want.upSince()) > dnsRise {
		return failf("mis-steered", "www.cdn.test A from %s: %s, want %s (up)", soakRegions[i].subnet, got.name, want.name)
	}
	return nil
}

// hasECS reports whether a response carries an EDNS Client Subnet option.
func hasECS(m *dns.Msg) bool {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if _, ok := opt.(*dns.EDNS0_SUBNET); ok {
				return true
			}
		}
	}
	return false
}

// onlyIfCached asks for a stored response and nothing else (RFC 9111 §5.2.1.7).
var onlyIfCached = http.Header{"Cache-Control": {"only-if-cached"}}

// checkObjects fetches every known object through the proxy with only-if-cached and compares
// each stored body with the origin's bytes. It returns how many were cached and checked.
func (t *soakTraffic) checkObjects(ctx context.Context) (checked, corrupt int) {
	t.mu.Lock()
	objs := append(append(append([]soakObject(nil), t.hits...), t.ftps...), t.misses[max(0, len(t.misses)-maxMissesKept):]...)
	t.mu.Unlock()
	var rc *rawConn
	defer func() {
		if rc != nil {
			rc.c.Close()
		}
	}()
	for _, o := range objs {
		start := time.Now()
		st, body, err := t.fetchCached(ctx, o, &rc)
		switch {
		case err != nil:
			t.rec.failure(kindCheck, classOf(err), "only-if-cached "+o.path+": "+err.Error(), start)
		case st == http.StatusGatewayTimeout: // not stored (evicted or purged)
		case st != 200:
			t.rec.failure(kindCheck, strconv.Itoa(st), "only-if-cached "+o.path, start)
		case sha256.Sum256(body) != o.sum:
			corrupt++
			checked++
			t.rec.failure(kindCheck, classCorrupt, fmt.Sprintf("stored %s: %d bytes that differ from the origin's", o.path, len(body)), start)
		default:
			checked++
		}
	}
	return checked, corrupt
}

// fetchCached fetches o with only-if-cached: web objects on the reverse route, FTP files
// through the forward proxy.
func (t *soakTraffic) fetchCached(ctx context.Context, o soakObject, rc **rawConn) (int, []byte, error) {
	if !o.ftp {
		return t.get(ctx, o.path, "", onlyIfCached)
	}
	if *rc == nil {
		c, err := t.dialRaw()
		if err != nil {
			return 0, nil, err
		}
		*rc = c
	}
	req := "GET " + o.path + " HTTP/1.1\r\nHost: " + t.ports.addr(t.ports.ftp) + "\r\nCache-Control: only-if-cached\r\n\r\n"
	resps, err := (*rc).exchange([]byte(req), 1)
	if err != nil || resps[0].close {
		(*rc).c.Close()
		*rc = nil
	}
	if err != nil {
		return 0, nil, err
	}
	return resps[0].status, resps[0].body, nil
}

// fillCache sends n misses in pipelined bursts so the memory and disk tiers are full before
// the baseline is taken.
func (t *soakTraffic) fillCache(ctx context.Context, n int) error {
	const conns = 4
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := t.dialRaw()
			if err != nil {
				errs <- err
				return
			}
			defer func() { rc.c.Close() }()
			for i := w; i < n && ctx.Err() == nil; i += conns * pipelineDepth {
				var reqs []byte
				for j := range pipelineDepth {
					reqs = append(reqs, fmt.Sprintf("GET /bytes/%d?fill=%s-%d HTTP/1.1\r\nHost: %s\r\n\r\n", missSize, t.runID, i+j*conns, t.ports.addr(t.ports.proxy))...)
				}
				resps, err := rc.exchange(reqs, pipelineDepth)
				if err == nil {
					for _, r := range resps {
						if r.status != 200 {
							err = fmt.Errorf("fill: status %d", r.status)
						}
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// closeIdle drops the clients' idle connections, so the suite can return to its baseline.
func (t *soakTraffic) closeIdle() { t.client.CloseIdleConnections() }
