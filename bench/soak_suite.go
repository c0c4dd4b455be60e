package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// soakPorts are the suite's listeners, each on a free port.
type soakPorts struct {
	admin, proxy, web, ftp, dns, smtp, relay, pop3, imap int
}

// pickSoakPorts finds free ports: TCP on 127.0.0.1 (the DNS port is also checked for UDP), and
// the relay port on 127.0.0.2, where the second mail host listens.
func pickSoakPorts() (soakPorts, error) {
	ps, err := freePorts(8)
	if err != nil {
		return soakPorts{}, err
	}
	p := soakPorts{admin: ps[0], proxy: ps[1], web: ps[2], ftp: ps[3], dns: ps[4], smtp: ps[5], pop3: ps[6], imap: ps[7]}
	if u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p.dns)); err != nil {
		return soakPorts{}, fmt.Errorf("dns port %d: %w", p.dns, err)
	} else {
		u.Close()
	}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		return soakPorts{}, fmt.Errorf("relay port on 127.0.0.2: %w", err)
	}
	p.relay = l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p, nil
}

func (p soakPorts) addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// The soak's mailboxes: alice is read over POP3, bob and carol (the relayed mail, on the
// second mail host) over IMAP.
var soakUsers = []struct{ addr, login, reader string }{
	{"alice@outpost.test", "alice", "pop3"},
	{"bob@outpost.test", "bob", "imap"},
	{"carol@remote.test", "carol", "imap"},
}

// soakPassword is every soak mailbox's password (hashed at bcrypt's minimum cost, so logins
// stay cheap on a loaded machine).
const soakPassword = "soak-pw"

// soakConfig is the suite's configuration: every listener on its free port, short idle
// timeouts (so idle connections, and their goroutines and fds, go away between phases), a
// small memory and disk cache (filled during the warm-up, so memory is flat afterwards),
// upstream timeouts short enough for the faults to be answered quickly, the fault origin
// as a route, the soak's edges as health-checked DNS edges, and three mailboxes.
func soakConfig(dir string, p soakPorts, faultAddr string, echoPort int, edges []*soakEdge) (string, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(soakPassword), bcrypt.MinCost)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by outpost bench soak.")
	w("data_dir = %q", filepath.Join(dir, "data"))
	w(`grace_period = "5s"`)
	w("[log]\nlevel = \"warn\"")
	w("[admin]\nlisten = %q\ndashboard = true", p.addr(p.admin))
	w("[proxy]\nlisten = [%q]\nforward = true\nidle_timeout = \"5s\"\ntunnel_idle_timeout = \"30s\"\nconnect_ports = [%d]", p.addr(p.proxy), echoPort)
	w("[proxy.upstream]\nconnect_timeout = \"2s\"\nresponse_header_timeout = \"2s\"\nread_timeout = \"2s\"\nidle_conn_timeout = \"5s\"\nfail_timeout = \"1s\"")
	w("[proxy.access_log]\ndestination = %q", filepath.Join(dir, "access.log"))
	w("[proxy.ftp]\nidle_conn_timeout = \"5s\"")
	w("[[proxy.routes]]\nhost = %q\norigins = [\"http://%s\"]", faultHost, faultAddr)
	w("[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://%s\"]", p.addr(p.web))
	w("[cache]\nmemory_size = \"4MiB\"\nmax_object_size = \"1MiB\"\ndisk_size = \"4MiB\"")
	w("[dns]\nlisten = %q\nudp_sockets = 1\nwatch_interval = \"0s\"", p.addr(p.dns))
	w("[dns.geoip]\ncity_db = \"geoip/demo-city.mmdb\"\nasn_db = \"geoip/demo-asn.mmdb\"\ngenerate_demo = true")
	w("[dns.health]\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2")
	w(`[[dns.zones]]
name = "cdn.test"
records = ["@ IN SOA ns1.cdn.test. hostmaster.cdn.test. 1 7200 3600 1209600 300", "@ IN NS ns1.cdn.test.", "ns1 IN A 127.0.0.1"]
[[dns.zones]]
name = "outpost.test"
records = ["@ IN SOA ns1.outpost.test. hostmaster.outpost.test. 1 7200 3600 1209600 300", "@ IN NS ns1.outpost.test.", "ns1 IN A 127.0.0.1", "@ IN MX 10 mail.outpost.test.", "mail IN A 127.0.0.1"]
[[dns.zones]]
name = "remote.test"
records = ["@ IN SOA ns1.remote.test. hostmaster.remote.test. 1 7200 3600 1209600 300", "@ IN NS ns1.remote.test.", "ns1 IN A 127.0.0.1", "@ IN MX 10 mx.remote.test.", "mx IN A 127.0.0.2"]`)
	for i, e := range edges {
		w("[[dns.edges]]\nname = %q\naddrs = [%q]\nlatitude = %g\nlongitude = %g\ncheck = \"tcp://%s\"", e.name, e.ip(), soakRegions[i].lat, soakRegions[i].lon, e.addr)
	}
	w("[[dns.pools]]\nname = \"edges\"\nedges = [\"edge1\", \"edge2\", \"edge3\"]\nfallback = \"all\"")
	w("[[dns.dynamic]]\nname = \"www.cdn.test\"\npool = \"edges\"")
	w("[[dns.nets]]\nprefixes = [\"192.0.2.0/24\"]\nedges = [\"edge1\", \"edge2\"]")
	w("[[dns.asn]]\nasns = [64501]\nedges = [\"edge2\", \"edge1\"]")
	w("[web]\nlisten = %q\naccess_log = false", p.addr(p.web))
	w("[ftp]\nlisten = %q\nmax_connections_per_ip = 50", p.addr(p.ftp))
	w("[mail]")
	for _, u := range soakUsers {
		w("[[mail.users]]\naddress = %q\npassword_hash = %q", u.addr, hash)
	}
	w("[mail.smtp]\nresolver = %q\nrelay_port = %d\nretry_initial = \"1s\"\nretry_max = \"2s\"\nrelay_timeout = \"10s\"", p.addr(p.dns), p.relay)
	w("[[mail.smtp.hosts]]\nlisten = %q\nhostname = \"outpost.test\"\ndomains = [\"outpost.test\"]", p.addr(p.smtp))
	w("[[mail.smtp.hosts]]\nlisten = \"127.0.0.2:%d\"\nhostname = \"mx.remote.test\"\ndomains = [\"remote.test\"]", p.relay)
	w("[mail.pop3]\nlisten = %q", p.addr(p.pop3))
	w("[mail.imap]\nlisten = %q", p.addr(p.imap))
	return b.String(), nil
}

// faultHost is the Host of the reverse route to the fault origin.
const faultHost = "faults.soak"

// soakRegion is a client network of the demo GeoIP data and the edge it steers to.
type soakRegion struct {
	subnet   string
	lat, lon float64
}

// soakRegions: the demo database's Frankfurt, New York and Tokyo networks, each nearest to
// (or mapped to) one edge: 192.0.2.0/24 → edge1 (nets map), 198.51.100.0/24 → edge2 (ASN
// map), 203.0.113.0/24 → edge3 (geo distance).
var soakRegions = []soakRegion{
	{"192.0.2.0", 50.11, 8.68},
	{"198.51.100.0", 40.71, -74.01},
	{"203.0.113.0", 35.68, 139.69},
}

// soakSuite is the running `outpost up`.
type soakSuite struct {
	proc  *process
	ports soakPorts
	conf  string
	admin *http.Client
}

// startSoakSuite starts binary up --config conf and waits until /readyz answers 200.
func startSoakSuite(ctx context.Context, binary, conf, logFile string, ports soakPorts) (*soakSuite, error) {
	cmd := exec.Command(binary, "up", "--config", conf)
	cmd.Env = outpostFreeEnv(os.Environ())
	p, err := startProcess("outpost", cmd, logFile)
	if err != nil {
		return nil, err
	}
	// The soak's own monitoring holds no connection between samples: a keep-alive one (two,
	// when the sampler and a quiesce asked at once) would count in the fds it judges.
	admin := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	s := &soakSuite{proc: p, ports: ports, conf: conf, admin: admin}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s.ready() {
			return s, nil
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop(5 * time.Second)
			return nil, fmt.Errorf("outpost up did not become ready (exit: %v); its log:\n%s", p.err, p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *soakSuite) pid() int { return s.proc.cmd.Process.Pid }

// ready reports whether the admin listener's /readyz answers 200.
func (s *soakSuite) ready() bool {
	resp, err := s.admin.Get("http://" + s.ports.addr(s.ports.admin) + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

// hup sends SIGHUP (a configuration reload) to the suite.
func (s *soakSuite) hup() error { return s.proc.cmd.Process.Signal(syscall.SIGHUP) }

// stop shuts the suite down (SIGTERM, then SIGKILL after 10 s).
func (s *soakSuite) stop() { s.proc.stop(10 * time.Second) }

// saveHeap writes the suite's heap profile (admin /debug/pprof/heap) to file, for diagnosing
// growth: go tool pprof -base heap-baseline.pprof heap-end.pprof.
func (s *soakSuite) saveHeap(file string) error {
	resp, err := s.admin.Get("http://" + s.ports.addr(s.ports.admin) + "/debug/pprof/heap")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return os.WriteFile(file, b, 0o644)
}

// ProcSample is the suite process's resource use at one moment.
type ProcSample struct {
	T          time.Duration `json:"t_ns"` // since the run started
	RSS        int64         `json:"rss_bytes"`
	FDs        int           `json:"fds"`
	Goroutines int           `json:"goroutines"`
	Threads    int           `json:"threads"`
	HeapInuse  int64         `json:"heap_inuse_bytes"`
	CPU        float64       `json:"cpu_seconds"` // the suite's user + system time so far
	Load1      float64       `json:"load1"`       // the machine's 1-minute load average
	Scrape     time.Duration `json:"scrape_ns"`   // how long the admin /metrics took to answer
	cpuRate    float64       // CPU cores used since the previous sample (for the chart)
}

// sample reads the suite's RSS and threads from /proc/PID/status, its open fds from
// /proc/PID/fd, and goroutines and heap from the admin /metrics (the Go collector).
func (s *soakSuite) sample(start time.Time) (ProcSample, error) {
	ps := ProcSample{T: time.Since(start)}
	pid := strconv.Itoa(s.pid())
	st, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return ps, fmt.Errorf("suite status: %w", err)
	}
	ps.RSS, ps.Threads = parseProcStatus(string(st))
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return ps, fmt.Errorf("suite fds: %w", err)
	}
	ps.FDs = len(fds)
	if b, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil {
		if pt, err := parseProcStat(string(b)); err == nil {
			ps.CPU = ticksToSeconds(pt.own)
		}
	}
	ps.Load1 = loadAverage()
	t0 := time.Now()
	m, err := s.metrics("go_goroutines", "go_memstats_heap_inuse_bytes")
	ps.Scrape = time.Since(t0)
	if err != nil {
		return ps, err
	}
	ps.Goroutines, ps.HeapInuse = int(m["go_goroutines"]), int64(m["go_memstats_heap_inuse_bytes"])
	return ps, nil
}

// parseProcStatus returns VmRSS (bytes) and Threads from /proc/PID/status.
func parseProcStatus(st string) (rss int64, threads int) {
	for _, l := range strings.Split(st, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "Threads":
			threads = int(n)
		}
	}
	return rss, threads
}

// metrics fetches the admin /metrics and returns the named unlabelled samples.
func (s *soakSuite) metrics(names ...string) (map[string]float64, error) {
	resp, err := s.admin.Get("http://" + s.ports.addr(s.ports.admin) + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("suite metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("suite metrics: %s", resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20), names), nil
}

// parseMetrics reads Prometheus text exposition and returns the values of the named samples
// without labels (lines "name value").
func parseMetrics(r io.Reader, names []string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
