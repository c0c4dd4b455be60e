package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DNSQuery is one question of the query mix.
type DNSQuery struct {
	Name string
	Type uint16
}

// DNSOptions configure `outpost bench dns`.
type DNSOptions struct {
	// Server is the authoritative server's host:port.
	Server string
	// Queries is the mix, sent in turn by every client.
	Queries []DNSQuery
	// Clients is the number of sockets (UDP) or connections (TCP).
	Clients int
	// Outstanding bounds the queries in flight per client.
	Outstanding int
	// Duration bounds the run; Requests bounds it by count. At least one is set.
	Duration time.Duration
	Requests int64
	// TCP sends queries over TCP (RFC 7766, pipelined), else UDP.
	TCP bool
	// ECSRandom adds an EDNS Client Subnet option (RFC 7871) with a random IPv4 /24.
	ECSRandom bool
	// EDNS adds an OPT record (4096-byte UDP payload) even without ECS.
	EDNS bool
	// Timeout is how long a query may go unanswered before it counts as lost.
	Timeout time.Duration
	// Seed makes the ECS addresses reproducible.
	Seed uint64
}

// Validate checks the options, returning a *UsageError naming the flag.
func (o *DNSOptions) Validate() error {
	switch {
	case o.Server == "":
		return usagef("give the server as host:port")
	case len(o.Queries) == 0:
		return usagef("give queries with --queries FILE or --name")
	case o.Clients <= 0 || o.Clients > 10000:
		return usagef("--clients must be 1..10000, got %d", o.Clients)
	case o.Outstanding <= 0 || o.Outstanding > 60000:
		return usagef("--outstanding must be 1..60000, got %d", o.Outstanding)
	case o.Duration < 0 || o.Requests < 0:
		return usagef("-d and -n must not be negative")
	case o.Duration == 0 && o.Requests == 0:
		return usagef("give -d duration or -n queries")
	case o.Timeout <= 0:
		return usagef("--timeout must be positive")
	}
	if _, _, err := net.SplitHostPort(o.Server); err != nil {
		return usagef("server %q: %v", o.Server, err)
	}
	return nil
}

// ParseQueryFile reads a dnsperf-style query file: "name TYPE" per line, # comments.
func ParseQueryFile(r io.Reader) ([]DNSQuery, error) {
	var out []DNSQuery
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		q, err := ParseQuery(f)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, q)
	}
	return out, sc.Err()
}

// ParseQuery parses ["name"] or ["name", "TYPE"] (type A by default).
func ParseQuery(f []string) (DNSQuery, error) {
	if len(f) == 0 || len(f) > 2 {
		return DNSQuery{}, fmt.Errorf("want \"name [TYPE]\"")
	}
	if _, ok := dns.IsDomainName(f[0]); !ok {
		return DNSQuery{}, fmt.Errorf("bad name %q", f[0])
	}
	q := DNSQuery{Name: dns.Fqdn(f[0]), Type: dns.TypeA}
	if len(f) == 2 {
		t, ok := dns.StringToType[strings.ToUpper(f[1])]
		if !ok {
			return DNSQuery{}, fmt.Errorf("unknown type %q", f[1])
		}
		q.Type = t
	}
	return q, nil
}

// DNSResult is what one DNS load run measured.
type DNSResult struct {
	Elapsed   time.Duration    `json:"elapsed_ns"`
	Sent      int64            `json:"sent"`
	Completed int64            `json:"completed"`
	Lost      int64            `json:"lost"`
	QPS       float64          `json:"qps"`
	Rcodes    map[string]int64 `json:"rcodes"`
	Truncated int64            `json:"truncated"`
	// Reconnects counts TCP connections the server closed (in-flight queries were re-sent).
	Reconnects int64            `json:"reconnects"`
	Errors     map[string]int64 `json:"errors"`
	Latency    Latency          `json:"latency"`
	Clients    int              `json:"clients"`
	Transport  string           `json:"transport"`
}

// dnsHeader is the part of a DNS response the load generator reads.
type dnsHeader struct {
	id    uint16
	rcode int
	tc    bool
}

// parseDNSHeader checks that b is a response (QR set, one question echoed) and returns its
// header fields.
func parseDNSHeader(b []byte) (dnsHeader, error) {
	if len(b) < 12 {
		return dnsHeader{}, fmt.Errorf("%w: %d bytes", errDNSShort, len(b))
	}
	flags := binary.BigEndian.Uint16(b[2:4])
	if flags&0x8000 == 0 {
		return dnsHeader{}, errDNSNotResponse
	}
	return dnsHeader{id: binary.BigEndian.Uint16(b[0:2]), rcode: int(flags & 0xF), tc: flags&0x0200 != 0}, nil
}

var (
	errDNSShort       = errors.New("DNS message shorter than its header")
	errDNSNotResponse = errors.New("DNS message is not a response")
)

// packQueries prebuilds every query; ECS queries end with the 3 address bytes of a /24,
// which the sender overwrites.
func packQueries(o DNSOptions) ([][]byte, error) {
	out := make([][]byte, 0, len(o.Queries))
	for _, q := range o.Queries {
		m := new(dns.Msg)
		m.SetQuestion(q.Name, q.Type)
		m.RecursionDesired = false
		if o.EDNS || o.ECSRandom {
			opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			opt.SetUDPSize(4096)
			if o.ECSRandom {
				opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
					SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0).To4()})
			}
			m.Extra = append(m.Extra, opt)
		}
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", q.Name, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// dnsPlan is what the DNS clients share.
type dnsPlan struct {
	o       DNSOptions
	queries [][]byte
	budget  atomic.Int64
	start   time.Time
	end     time.Time
}

// RunDNS runs the DNS load and returns the merged result.
func RunDNS(ctx context.Context, o DNSOptions) (*DNSResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	qs, err := packQueries(o)
	if err != nil {
		return nil, err
	}
	p := &dnsPlan{o: o, queries: qs, start: time.Now()}
	if o.Requests > 0 {
		p.budget.Store(o.Requests)
	} else {
		p.budget.Store(math.MaxInt64)
	}
	if o.Duration > 0 {
		p.end = p.start.Add(o.Duration)
	}
	clients := make([]*dnsClient, o.Clients)
	var wg sync.WaitGroup
	for i := range clients {
		c, err := p.newClient(i)
		if err != nil {
			for _, c := range clients[:i] {
				c.conn.Close()
			}
			return nil, err
		}
		clients[i] = c
	}
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	wg.Wait()
	return p.merge(clients), nil
}

// dnsClient is one socket with a window of outstanding queries matched by ID.
type dnsClient struct {
	p      *dnsPlan
	conn   net.Conn
	tcp    bool
	rng    *rand.Rand
	window chan struct{} // one token per outstanding query

	closing atomic.Bool // set before run closes the connection

	mu      sync.Mutex
	resend  map[uint16][]byte // TCP: in-flight frames, re-sent if the server closes the connection
	sentAt  [65536]int64      // send time (unix ns) per in-flight ID, 0 when free
	nextID  uint16
	pending int

	sent, done, lost, tc, reconnects int64
	lastAnswer                       time.Time
	hist                             latencyHist
	rcodes                           map[int]int64
	errors                           map[string]int64
}

func (p *dnsPlan) newClient(i int) (*dnsClient, error) {
	network := "udp"
	if p.o.TCP {
		network = "tcp"
	}
	conn, err := net.DialTimeout(network, p.o.Server, p.o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("connect %s/%s: %w", network, p.o.Server, err)
	}
	seed := p.o.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	var resend map[uint16][]byte
	if p.o.TCP {
		resend = map[uint16][]byte{}
	}
	return &dnsClient{p: p, conn: conn, tcp: p.o.TCP, resend: resend, rng: rand.New(rand.NewPCG(seed, uint64(i))),
		window: make(chan struct{}, p.o.Outstanding), nextID: uint16(i * 7919),
		hist: newLatencyHist(), rcodes: map[int]int64{}, errors: map[string]int64{}}, nil
}

// run sends until the budget or the time is spent, then waits for the stragglers.
func (c *dnsClient) run(ctx context.Context) {
	recvDone := make(chan struct{})
	go func() { defer close(recvDone); c.receive() }()
	c.send(ctx)
	// Let the last queries answer (or time out), then stop the receiver.
	deadline := time.Now().Add(c.p.o.Timeout)
	for time.Now().Before(deadline) && c.inFlight() > 0 {
		select {
		case <-recvDone:
			deadline = time.Now()
		case <-time.After(5 * time.Millisecond):
		}
	}
	c.closing.Store(true)
	c.mu.Lock()
	c.conn.Close()
	c.mu.Unlock()
	<-recvDone
	c.expire(time.Now().Add(time.Hour)) // whatever is left is lost
}

func (c *dnsClient) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}

// send writes queries while the window has room.
func (c *dnsClient) send(ctx context.Context) {
	var buf []byte
	qi := int(c.rng.IntN(len(c.p.queries)))
	for ctx.Err() == nil {
		if !c.p.end.IsZero() && !time.Now().Before(c.p.end) {
			return
		}
		if c.p.budget.Add(-1) < 0 {
			return
		}
		select {
		case c.window <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !c.p.end.IsZero() && !time.Now().Before(c.p.end) {
			<-c.window
			return
		}
		q := c.p.queries[qi]
		qi = (qi + 1) % len(c.p.queries)
		buf = c.frame(buf[:0], q)
		if err := c.write(buf); err != nil {
			c.mu.Lock()
			c.errors["write"]++
			c.mu.Unlock()
			c.release(c.idOf(buf))
			if c.tcp {
				return
			}
		}
	}
}

// write sends one query; over TCP it holds the lock, so that a reconnect does not interleave.
func (c *dnsClient) write(buf []byte) error {
	if !c.tcp {
		_, err := c.conn.Write(buf)
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resend != nil {
		c.resend[c.idOf(buf)] = append([]byte(nil), buf...)
	}
	_, err := c.conn.Write(buf)
	if err != nil && !c.closing.Load() {
		return nil // the receiver reconnects and re-sends it
	}
	return err
}

// reconnect replaces a TCP connection the server closed (servers limit queries per
// connection) and re-sends the queries still in flight; it reports whether it succeeded.
func (c *dnsClient) reconnect() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return false
	}
	c.conn.Close()
	conn, err := net.DialTimeout("tcp", c.p.o.Server, c.p.o.Timeout)
	if err != nil {
		c.errors["connect"]++
		return false
	}
	c.conn = conn
	c.reconnects++
	for _, f := range c.resend {
		conn.Write(f)
	}
	return true
}

// frame builds one query with a free ID (and a random ECS /24), length-prefixed over TCP.
func (c *dnsClient) frame(buf, q []byte) []byte {
	off := 0
	if c.tcp {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(q)))
		off = 2
	}
	buf = append(buf, q...)
	if c.p.o.ECSRandom {
		n := len(buf)
		buf[n-3], buf[n-2], buf[n-1] = byte(1+c.rng.IntN(223)), byte(c.rng.IntN(256)), byte(c.rng.IntN(256))
	}
	c.mu.Lock()
	for c.sentAt[c.nextID] != 0 {
		c.nextID++
	}
	id := c.nextID
	c.nextID++
	c.sentAt[id] = time.Now().UnixNano()
	c.pending++
	c.sent++
	c.mu.Unlock()
	binary.BigEndian.PutUint16(buf[off:], id)
	return buf
}

func (c *dnsClient) idOf(buf []byte) uint16 {
	if c.tcp {
		buf = buf[2:]
	}
	return binary.BigEndian.Uint16(buf)
}

// release frees an ID and its window slot.
func (c *dnsClient) release(id uint16) {
	c.mu.Lock()
	if c.sentAt[id] != 0 {
		c.sentAt[id] = 0
		delete(c.resend, id)
		c.pending--
		<-c.window
	}
	c.mu.Unlock()
}

// receive reads responses until the connection closes, expiring lost queries every 50 ms.
func (c *dnsClient) receive() {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				c.expire(now)
			case <-stop:
				return
			}
		}
	}()
	buf := make([]byte, 65535)
	var br *bufio.Reader
	if c.tcp {
		br = bufio.NewReaderSize(c.conn, 64<<10)
	}
	for {
		msg, err := c.readMsg(br, buf)
		if err != nil {
			if c.tcp && c.reconnect() {
				c.mu.Lock()
				br.Reset(c.conn)
				c.mu.Unlock()
				continue
			}
			if !c.tcp && !errors.Is(err, net.ErrClosed) {
				c.mu.Lock()
				c.errors["read"]++ // e.g. ICMP port unreachable
				c.mu.Unlock()
				continue
			}
			return
		}
		c.answer(msg, time.Now())
	}
}

// readMsg reads one DNS message: a datagram, or a length-prefixed TCP message.
func (c *dnsClient) readMsg(br *bufio.Reader, buf []byte) ([]byte, error) {
	if !c.tcp {
		n, err := c.conn.Read(buf)
		return buf[:n], err
	}
	var l [2]byte
	if _, err := io.ReadFull(br, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(br, buf[:n])
	return buf[:n], err
}

// answer matches a response to its query and records it.
func (c *dnsClient) answer(msg []byte, now time.Time) {
	h, err := parseDNSHeader(msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errors["malformed"]++
		return
	}
	at := c.sentAt[h.id]
	if at == 0 {
		c.errors["unexpected id"]++
		return
	}
	c.sentAt[h.id] = 0
	delete(c.resend, h.id)
	c.pending--
	<-c.window
	c.done++
	c.lastAnswer = now
	c.hist.record(time.Duration(now.UnixNano() - at))
	c.rcodes[h.rcode]++
	if h.tc {
		c.tc++
	}
}

// expire counts queries older than the timeout as lost and frees their slots.
func (c *dnsClient) expire(now time.Time) {
	cut := now.Add(-c.p.o.Timeout).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == 0 {
		return
	}
	for id, at := range c.sentAt {
		if at != 0 && at < cut {
			c.sentAt[id] = 0
			delete(c.resend, uint16(id))
			c.pending--
			c.lost++
			<-c.window
		}
	}
}

// merge sums the clients' results.
// The elapsed time runs to the last answer: waiting out the lost queries' timeouts does not
// dilute the rate.
func (p *dnsPlan) merge(cs []*dnsClient) *DNSResult {
	last := p.start
	for _, c := range cs {
		if c.lastAnswer.After(last) {
			last = c.lastAnswer
		}
	}
	elapsed := last.Sub(p.start)
	r := &DNSResult{Elapsed: elapsed, Rcodes: map[string]int64{}, Errors: map[string]int64{}, Clients: len(cs), Transport: "udp"}
	if p.o.TCP {
		r.Transport = "tcp"
	}
	h := newLatencyHist()
	for _, c := range cs {
		r.Sent += c.sent
		r.Completed += c.done
		r.Lost += c.lost
		r.Truncated += c.tc
		r.Reconnects += c.reconnects
		for k, n := range c.rcodes {
			r.Rcodes[dns.RcodeToString[k]] += n
		}
		for k, n := range c.errors {
			r.Errors[k] += n
		}
		h.merge(c.hist)
	}
	r.Latency = h.summary()
	if s := elapsed.Seconds(); s > 0 {
		r.QPS = float64(r.Completed) / s
	}
	return r
}

// WriteDNS writes a human-readable summary of a DNS load result.
func WriteDNS(w io.Writer, r *DNSResult) {
	fmt.Fprintf(w, "%d queries sent, %d answered, %d lost in %v over %d %s clients\n", r.Sent, r.Completed, r.Lost,
		r.Elapsed.Round(time.Millisecond), r.Clients, r.Transport)
	fmt.Fprintf(w, "  queries/s   %12.1f\n", r.QPS)
	l := r.Latency
	fmt.Fprintf(w, "  latency     p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	fmt.Fprintf(w, "  rcodes      %s\n", formatCounts(r.Rcodes))
	if r.Truncated > 0 {
		fmt.Fprintf(w, "  truncated   %d\n", r.Truncated)
	}
	if r.Reconnects > 0 {
		fmt.Fprintf(w, "  reconnects  %d (the server closed TCP connections; queries re-sent)\n", r.Reconnects)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors      %s\n", formatCounts(r.Errors))
	}
}

// DNSTable returns a DNS result as a report table.
func DNSTable(r *DNSResult) *Table {
	l := r.Latency
	t := &Table{Header: []string{"measure", "value"}}
	add := func(k, v string) { t.Rows = append(t.Rows, []string{k, v}) }
	add("queries sent / answered / lost", fmt.Sprintf("%d / %d / %d", r.Sent, r.Completed, r.Lost))
	add("elapsed", r.Elapsed.Round(time.Millisecond).String())
	add("queries/s", fmt.Sprintf("%.1f", r.QPS))
	add("latency p50 / p90 / p99 / p99.9 / max", fmt.Sprintf("%v / %v / %v / %v / %v", l.P50, l.P90, l.P99, l.P999, l.Max))
	add("rcodes", formatCounts(r.Rcodes))
	add("errors", formatCounts(r.Errors))
	return t
}

// ReadQueryFile opens and parses a dnsperf-style query file.
func ReadQueryFile(file string) ([]DNSQuery, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseQueryFile(f)
}

// GenerateQueries builds a query mix for a zone: its SOA and NS, A and AAAA for www, and
// random names under it (NXDOMAIN on most servers, and never answered from a cache: the
// random-subdomain pattern), random of them in all.
func GenerateQueries(zone string, random int, seed uint64) ([]DNSQuery, error) {
	if _, ok := dns.IsDomainName(zone); !ok || zone == "" {
		return nil, fmt.Errorf("bad zone %q", zone)
	}
	if random < 0 || random > 1_000_000 {
		return nil, fmt.Errorf("random names must be 0..1000000, got %d", random)
	}
	z := dns.Fqdn(zone)
	qs := []DNSQuery{{z, dns.TypeSOA}, {z, dns.TypeNS}, {"www." + z, dns.TypeA}, {"www." + z, dns.TypeAAAA}}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for range random {
		qs = append(qs, DNSQuery{fmt.Sprintf("r%012x.%s", r.Uint64()&0xffffffffffff, z), dns.TypeA})
	}
	return qs, nil
}
