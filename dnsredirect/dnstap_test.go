package dnsredirect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-proxy/outpost/internal/config"
)

// tapCollector is a dnstap collector on a Unix socket, read with the library's Frame Streams
// reader: every message it receives goes to got. Until release is closed it reads nothing past
// the handshake (a collector that has stalled).
type tapCollector struct {
	ln      net.Listener
	got     chan *dnstap.Dnstap
	release chan struct{}
	n       atomic.Int64
	conns   chan net.Conn
}

func startCollector(t *testing.T, path string, stalled bool) *tapCollector {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := &tapCollector{ln: ln, got: make(chan *dnstap.Dnstap, 100_000), release: make(chan struct{}), conns: make(chan net.Conn, 16)}
	if !stalled {
		close(c.release)
	}
	go c.accept()
	t.Cleanup(c.stop)
	return c
}

func (c *tapCollector) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.conns <- conn
		go c.read(conn)
	}
}

func (c *tapCollector) read(conn net.Conn) {
	defer conn.Close()
	r, err := dnstap.NewReader(conn, &dnstap.ReaderOptions{Bidirectional: true, Timeout: 5 * time.Second})
	if err != nil {
		return
	}
	<-c.release
	buf := make([]byte, 1<<17)
	for {
		n, err := r.ReadFrame(buf)
		if err != nil {
			return
		}
		m := new(dnstap.Dnstap)
		if err := proto.Unmarshal(buf[:n], m); err != nil {
			return
		}
		c.n.Add(1)
		c.got <- m
	}
}

// stop closes the listener and every connection accepted (the collector goes away).
func (c *tapCollector) stop() {
	c.ln.Close()
	for {
		select {
		case conn := <-c.conns:
			conn.Close()
		default:
			return
		}
	}
}

// counterTotal sums every series of a counter.
func counterTotal(t *testing.T, reg prometheus.Registerer, name string) float64 {
	t.Helper()
	mfs, err := reg.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// tapCase is one kind of query the dnstap test sends, and what its response must carry.
type tapCase struct {
	name   string
	subnet string
	rcode  int
	answer string // the one address answered, "" for none
}

var tapCases = []tapCase{
	{"www.cdn.test.", "192.0.2.0/24", dns.RcodeSuccess, "127.0.0.11"},
	{"www.cdn.test.", "198.51.100.0/24", dns.RcodeSuccess, "127.0.0.12"},
	{"www.cdn.test.", "203.0.113.0/24", dns.RcodeSuccess, "127.0.0.13"},
	{"www.example.test.", "", dns.RcodeSuccess, "192.0.2.80"},
	{"nope.example.test.", "", dns.RcodeNameError, ""},
}

// tapConfig is the test zones with dnstap to a Unix socket.
func tapConfig(sock string, queue int) string {
	return strings.Replace(testZones, "[dns.rrl]", fmt.Sprintf("[dns.dnstap]\nenabled = true\ndestination = \"unix:%s\"\nidentity = \"tap-test\"\nqueue_size = %d\n[dns.rrl]", sock, queue), 1)
}

// TestDnstap sends 10,000 queries over UDP and reads the dnstap stream back: one AUTH_QUERY and
// one AUTH_RESPONSE per query with the client's address and port, the query's ECS option, the
// response's rcode and answer — or, with a stalled collector and a small queue, exactly as
// many fewer messages as outpost_dns_dnstap_dropped_total counts, with every query answered.
func TestDnstap(t *testing.T) {
	const queries = 10_000
	tests := []struct {
		name    string
		stalled bool
		queue   int
	}{
		{"collector keeps up", false, 8192},
		{"stalled collector drops", true, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "tap.sock")
			col := startCollector(t, sock, tc.stalled)
			ts := startServer(t, tapConfig(sock, tc.queue))
			client := sendTapQueries(t, ts.addr, queries)
			dropped := counterTotal(t, ts.env.Metrics, "outpost_dns_dnstap_dropped_total")
			if tc.stalled && dropped == 0 {
				t.Errorf("a stalled collector and a queue of %d dropped nothing", tc.queue)
			}
			if tc.stalled {
				close(col.release)
			}
			want := 2*queries - int(dropped)
			got := readTap(t, col, want)
			checkTapMessages(t, got, client, dnstap.SocketProtocol_UDP, dropped == 0)
			written := func() bool { return int(counterTotal(t, ts.env.Metrics, "outpost_dns_dnstap_frames_total")) == want }
			waitFor(t, fmt.Sprintf("%d messages counted as written", want), written) // counted at the flush that follows)

			t.Logf("%d messages read, %v dropped", len(got), dropped)
		})
	}
}

// sendTapQueries sends n queries one after another from one UDP socket, query i with ID i and
// case i%len(tapCases), and checks every answer arrives. It returns the client's address.
func sendTapQueries(t *testing.T, addr string, n int) netip.AddrPort {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for i := range n {
		tc := tapCases[i%len(tapCases)]
		m := newQuery(tc.name, dns.TypeA, true, tc.subnet)
		m.Id = uint16(i)
		pkt, _ := m.Pack()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		var r dns.Msg
		if err := r.Unpack(buf[:k]); err != nil || r.Id != uint16(i) {
			t.Fatalf("query %d: reply id %d, %v", i, r.Id, err)
		}
	}
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// readTap collects want messages, failing if they do not arrive or more do.
func readTap(t *testing.T, col *tapCollector, want int) []*dnstap.Dnstap {
	t.Helper()
	var got []*dnstap.Dnstap
	deadline := time.After(60 * time.Second)
	for len(got) < want {
		select {
		case m := <-col.got:
			got = append(got, m)
		case <-deadline:
			t.Fatalf("read %d dnstap messages, want %d", len(got), want)
		}
	}
	select {
	case m := <-col.got:
		t.Fatalf("more messages than counted: %v", m)
	default:
	}
	return got
}

// checkTapMessages checks every message's fields against the query it logs (from client over
// proto); complete says every query must appear with both messages.
func checkTapMessages(t *testing.T, got []*dnstap.Dnstap, client netip.AddrPort, proto dnstap.SocketProtocol, complete bool) {
	t.Helper()
	seen := map[dnstap.Message_Type]map[uint16]bool{dnstap.Message_AUTH_QUERY: {}, dnstap.Message_AUTH_RESPONSE: {}}
	for _, d := range got {
		m := d.GetMessage()
		if string(d.GetIdentity()) != "tap-test" || string(d.GetVersion()) != "outpost" || d.GetType() != dnstap.Dnstap_MESSAGE {
			t.Fatalf("envelope: identity %q version %q type %v", d.GetIdentity(), d.GetVersion(), d.GetType())
		}
		if a, _ := netip.AddrFromSlice(m.GetQueryAddress()); a != client.Addr() || m.GetQueryPort() != uint32(client.Port()) ||
			m.GetSocketFamily() != dnstap.SocketFamily_INET || m.GetSocketProtocol() != proto {
			t.Fatalf("query address %v port %d (%v %v), want %v", a, m.GetQueryPort(), m.GetSocketFamily(), m.GetSocketProtocol(), client)
		}
		if m.GetQueryTimeSec() == 0 {
			t.Fatalf("no query time: %v", m)
		}
		wire := m.GetQueryMessage()
		if m.GetType() == dnstap.Message_AUTH_RESPONSE {
			wire = m.GetResponseMessage()
			if m.GetResponseTimeSec() < m.GetQueryTimeSec() {
				t.Fatalf("response before query: %v", m)
			}
		}
		var msg dns.Msg
		if err := msg.Unpack(wire); err != nil {
			t.Fatalf("%v message: %v", m.GetType(), err)
		}
		if err := checkTapMessage(m.GetType(), &msg); err != nil {
			t.Fatal(err)
		}
		if seen[m.GetType()][msg.Id] {
			t.Fatalf("%v for query %d twice", m.GetType(), msg.Id)
		}
		seen[m.GetType()][msg.Id] = true
	}
	if complete && (len(seen[dnstap.Message_AUTH_QUERY]) != len(got)/2 || len(seen[dnstap.Message_AUTH_RESPONSE]) != len(got)/2) {
		t.Errorf("%d queries and %d responses", len(seen[dnstap.Message_AUTH_QUERY]), len(seen[dnstap.Message_AUTH_RESPONSE]))
	}
}

// checkTapMessage compares a logged query or response with its case (by ID).
func checkTapMessage(mt dnstap.Message_Type, msg *dns.Msg) error {
	tc := tapCases[int(msg.Id)%len(tapCases)]
	if len(msg.Question) != 1 || msg.Question[0].Name != tc.name {
		return fmt.Errorf("%v %d: question %v, want %s", mt, msg.Id, msg.Question, tc.name)
	}
	subnet := ""
	if o := msg.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				subnet = netip.PrefixFrom(netip.MustParseAddr(e.Address.String()), int(e.SourceNetmask)).String()
			}
		}
	}
	if subnet != tc.subnet {
		return fmt.Errorf("%v %d: ECS %q, want %q", mt, msg.Id, subnet, tc.subnet)
	}
	if mt == dnstap.Message_AUTH_QUERY {
		if msg.Response {
			return fmt.Errorf("query %d logged with QR set", msg.Id)
		}
		return nil
	}
	want := []string{}
	if tc.answer != "" {
		want = []string{tc.answer}
	}
	if got := addrs(msg.Answer); msg.Rcode != tc.rcode || !slices.Equal(append([]string{}, got...), want) {
		return fmt.Errorf("response %d: %s %v, want %s %v", msg.Id, dns.RcodeToString[msg.Rcode], got, dns.RcodeToString[tc.rcode], want)
	}
	return nil
}

// TestDnstapReconnect: when the collector goes away the server keeps answering, counts what it
// cannot log, and logs to the collector that comes back on the same socket.
func TestDnstapReconnect(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "tap.sock")
	first := startCollector(t, sock, false)
	ts := startServer(t, tapConfig(sock, 1024))
	client := sendTapQueries(t, ts.addr, 10)
	checkTapMessages(t, readTap(t, first, 20), client, dnstap.SocketProtocol_UDP, true)

	first.stop()
	os.Remove(sock)
	waitFor(t, "messages counted as unavailable", func() bool {
		sendTapQueries(t, ts.addr, 1)
		return counterTotal(t, ts.env.Metrics, "outpost_dns_dnstap_dropped_total") > 0
	})

	second := startCollector(t, sock, false)
	waitFor(t, "the new collector to receive messages", func() bool {
		sendTapQueries(t, ts.addr, 1)
		return second.n.Load() > 0
	})
}

// TestDnstapFile logs to a file and reads it back with the library's file reader; a file
// already there is kept as *.1.
func TestDnstapFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queries.fstrm")
	os.WriteFile(path, []byte("old"), 0o644)
	text := strings.Replace(testZones, "[dns.rrl]", "[dns.dnstap]\nenabled = true\ndestination = \"queries.fstrm\"\nidentity = \"tap-test\"\nmessages = [\"auth_response\"]\n[dns.rrl]", 1)
	ts := startServerCfg(t, loadDNS(t, text), dir)
	client := sendTapQueries(t, ts.addr, 25)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil { // ends the stream (STOP)
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path + ".1"); string(b) != "old" {
		t.Errorf("previous file not kept: %q", b)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := dnstap.NewReader(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []*dnstap.Dnstap
	buf := make([]byte, 1<<16)
	for {
		n, err := r.ReadFrame(buf)
		if errors.Is(err, io.EOF) || err != nil {
			break
		}
		m := new(dnstap.Dnstap)
		if err := proto.Unmarshal(buf[:n], m); err != nil {
			t.Fatal(err)
		}
		if m.GetMessage().GetType() != dnstap.Message_AUTH_RESPONSE {
			t.Fatalf("logged %v, only responses configured", m.GetMessage().GetType())
		}
		got = append(got, m)
	}
	if len(got) != 25 {
		t.Fatalf("%d responses in the file, want 25", len(got))
	}
	checkTapMessages(t, got, client, dnstap.SocketProtocol_UDP, false)
}

// waitFor polls cond every 10 ms until it holds, failing after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// BenchmarkDnstap measures the query path (parse, answer, and with dnstap on, the clock and
// the copy into the queue) for a steered ECS query, with dnstap off and on side by side; the writer
// goroutine encodes into a file meanwhile. drops/op is the share of messages it could not keep
// up with (dropped, and counted, by design).
func BenchmarkDnstap(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			st, met := testState(b)
			var tp *tap
			if on {
				cfg := config.DNSDnstapConfig{Enabled: true, Destination: filepath.Join(b.TempDir(), "bench.fstrm"),
					Messages: config.DNSTapMessages, QueueSize: 8192}
				var err error
				if tp, err = newTap(cfg, "", netip.MustParseAddrPort("127.0.0.1:53"), met.tap, slog.New(slog.DiscardHandler)); err != nil {
					b.Fatal(err)
				}
				defer tp.close()
			}
			pkt, _ := newQuery("www.cdn.test.", dns.TypeA, true, "192.0.2.0/24").Pack()
			out := make([]byte, 0, maxTCPLength)
			q := new(query)
			src := netip.MustParseAddrPort("127.0.0.1:40000")
			b.ReportAllocs()
			var qtime time.Time
			for i := 0; b.Loop(); i++ {
				if tp != nil && i%udpBatch == 0 {
					qtime = time.Now() // the UDP path reads the clock once per batch
				}
				resp := st.handle(pkt, out, q, src.Addr(), false, met)
				if tp != nil {
					tp.record(pkt, resp, src, false, qtime)
				}
			}
			if tp != nil {
				b.ReportMetric(testutilValue(met.tap.queueFull)/float64(b.N)/2, "drops/op")
			}
		})
	}
}

// testutilValue reads a counter.
func testutilValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestTapEncode: the hand-encoded messages decode with the library's generated types into
// exactly the message proto.Marshal would have been given, for both families and transports.
func TestTapEncode(t *testing.T) {
	qt, rt := time.Unix(1764720000, 123456789), time.Unix(1764720000, 987654321)
	tests := []struct {
		name  string
		local string
		r     tapRecord
		mt    dnstap.Message_Type
	}{
		{"UDP IPv4 query", "127.0.0.1:53", tapRecord{query: []byte{1, 2, 3}, src: netip.MustParseAddrPort("192.0.2.7:4242"), qtime: qt, rtime: rt}, dnstap.Message_AUTH_QUERY},
		{"TCP IPv6 response", "[::1]:5353", tapRecord{resp: []byte{4, 5}, hasResp: true, src: netip.MustParseAddrPort("[2001:db8::7]:53000"), tcp: true, qtime: qt, rtime: rt}, dnstap.Message_AUTH_RESPONSE},
		{"family mismatch: no response address", "127.0.0.1:53", tapRecord{resp: []byte{6}, hasResp: true, src: netip.MustParseAddrPort("[2001:db8::8]:1"), qtime: qt, rtime: rt}, dnstap.Message_AUTH_RESPONSE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := &tapWriter{tap: &tap{identity: []byte("id"), version: []byte("v1"), local: netip.MustParseAddrPort(tc.local)}}
			var got dnstap.Dnstap
			if err := proto.Unmarshal(tw.encode(nil, &tc.r, tc.mt), &got); err != nil {
				t.Fatal(err)
			}
			fam, prot := dnstap.SocketFamily_INET6, dnstap.SocketProtocol_UDP
			if tc.r.src.Addr().Is4() {
				fam = dnstap.SocketFamily_INET
			}
			if tc.r.tcp {
				prot = dnstap.SocketProtocol_TCP
			}
			want := &dnstap.Message{Type: tc.mt.Enum(), SocketFamily: fam.Enum(), SocketProtocol: prot.Enum(),
				QueryAddress: tc.r.src.Addr().AsSlice(), QueryPort: proto.Uint32(uint32(tc.r.src.Port())),
				QueryTimeSec: proto.Uint64(uint64(qt.Unix())), QueryTimeNsec: proto.Uint32(uint32(qt.Nanosecond()))}
			if l := tw.local; l.Addr().Is4() == tc.r.src.Addr().Is4() {
				want.ResponseAddress, want.ResponsePort = l.Addr().AsSlice(), proto.Uint32(uint32(l.Port()))
			}
			if tc.mt == dnstap.Message_AUTH_QUERY {
				want.QueryMessage = tc.r.query
			} else {
				want.ResponseTimeSec, want.ResponseTimeNsec = proto.Uint64(uint64(rt.Unix())), proto.Uint32(uint32(rt.Nanosecond()))
				want.ResponseMessage = tc.r.resp
			}
			wantD := &dnstap.Dnstap{Identity: []byte("id"), Version: []byte("v1"), Type: dnstap.Dnstap_MESSAGE.Enum(), Message: want}
			if !proto.Equal(&got, wantD) {
				t.Errorf("decoded\n%v\nwant\n%v", &got, wantD)
			}
		})
	}
}

// TestDnstapReload: a reload turns dnstap on, a reload naming a file it cannot open is
// rejected and logging goes on, and a reload turns it off.
func TestDnstapReload(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "tap.sock")
	col := startCollector(t, sock, false)
	ts := startServer(t, testZones)
	reload := func(text string) error {
		cfg := loadDNS(t, text)
		cfg.Listen = ts.cfg.Listen
		return ts.Reload(cfg)
	}
	if err := reload(tapConfig(sock, 64)); err != nil {
		t.Fatal(err)
	}
	client := sendTapQueries(t, ts.addr, 3)
	checkTapMessages(t, readTap(t, col, 6), client, dnstap.SocketProtocol_UDP, true)

	bad := strings.Replace(testZones, "[dns.rrl]", "[dns.dnstap]\nenabled = true\ndestination = \"no/such/dir/tap.fstrm\"\n[dns.rrl]", 1)
	if err := reload(bad); err == nil || !strings.Contains(err.Error(), "dns.dnstap.destination") {
		t.Fatalf("reload to an unopenable file: %v, want a dns.dnstap.destination error", err)
	}
	client = sendTapQueries(t, ts.addr, 2)
	checkTapMessages(t, readTap(t, col, 4), client, dnstap.SocketProtocol_UDP, true)

	if err := reload(testZones); err != nil {
		t.Fatal(err)
	}
	if ts.tap.Load() != nil {
		t.Error("dnstap still running after a reload turned it off")
	}
}

// TestDnstapTCP: queries pipelined on one TCP connection are logged with protocol TCP and the
// connection's address and port.
func TestDnstapTCP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "tap.sock")
	col := startCollector(t, sock, false)
	ts := startServer(t, tapConfig(sock, 64))
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	var out []byte
	for i := range len(tapCases) {
		tc := tapCases[i]
		m := newQuery(tc.name, dns.TypeA, true, tc.subnet)
		m.Id = uint16(i)
		b, _ := m.Pack()
		out = append(binary.BigEndian.AppendUint16(out, uint16(len(b))), b...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range tapCases {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint16(l[:]))); err != nil {
			t.Fatal(err)
		}
	}
	checkTapMessages(t, readTap(t, col, 2*len(tapCases)), client, dnstap.SocketProtocol_TCP, true)
}
