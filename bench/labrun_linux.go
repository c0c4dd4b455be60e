//go:build linux

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// labRun is one run of the lab: its namespaces, delay lines and server processes, and the
// result being filled in.
type labRun struct {
	o          LabOptions
	net        *labNet
	topo       *labTopology
	dir        string // configs, data dirs and logs of every server
	parentTier bool
	page       string   // the demo page's path, /page/n
	objects    []string // the paths of its objects, as the cold load fetched them

	mu     sync.Mutex
	relays []*DelayLine
	procs  map[string]*labProc
	closed bool

	res *LabResult
}

// labProc is one server process, started with `ip netns exec`.
type labProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// runLab runs the lab and always cleans up, on success, error or cancellation.
func runLab(ctx context.Context, o LabOptions) (res *LabResult, err error) {
	start := time.Now()
	n, err := newLabNet()
	if err != nil {
		return nil, err
	}
	defer n.close()
	dir, err := os.MkdirTemp("", "outpost-lab-"+n.id+"-")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	r := &labRun{o: o, net: n, dir: dir, procs: map[string]*labProc{},
		page: "/page/" + strconv.Itoa(o.PageObjects)}
	if o.ObjectSize > 0 {
		r.page += "?size=" + strconv.FormatInt(o.ObjectSize, 10)
	}
	r.res = &LabResult{Prefix: n.nsPrefix, Delays: o.Delays, Health: o.Health, Page: "http://www.cdn.test" + r.page}
	stopWatch := context.AfterFunc(ctx, r.closeRelays) // an interrupt ends in-flight loads at once
	defer func() {
		stopWatch()
		if p := recover(); p != nil {
			r.cleanup()
			panic(p)
		}
		if cerr := r.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
		r.res.Leftover = n.leftover()
		r.res.Seconds = roundSeconds(time.Since(start))
		if o.Keep {
			r.progress("kept the run directory %s", dir)
		} else {
			os.RemoveAll(dir)
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		res = r.res
	}()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	if o.Ready != nil {
		o.Ready(n.nsPrefix)
	}
	return nil, r.measure(ctx)
}

// progress writes one line to the progress stream.
func (r *labRun) progress(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "lab: "+format+"\n", args...)
	}
}

// setup builds the namespaces and links, starts the delay lines and the servers, and waits
// until every server is ready and the DNS steers each region to its near edge.
func (r *labRun) setup(ctx context.Context) error {
	t0 := time.Now()
	if err := r.decideParentTier(ctx); err != nil {
		return err
	}
	r.topo = newLabTopology(r.o.Delays, r.parentTier)
	if err := r.buildNetwork(); err != nil {
		return err
	}
	if err := r.startRelays(); err != nil {
		return err
	}
	if err := r.startServers(ctx); err != nil {
		return err
	}
	r.progress("%s*: %d namespaces, %d veth links, %d delay lines, %d servers up in %s",
		r.net.nsPrefix, len(r.topo.nodes()), len(r.topo.links), len(r.relays), len(r.procs), time.Since(t0).Round(time.Millisecond))
	return nil
}

// decideParentTier finds out whether the binary accepts [proxy.parents]: edges use the parent
// when it does ("auto") and the lab says so when it does not.
func (r *labRun) decideParentTier(ctx context.Context) error {
	if r.o.ParentTier == "off" {
		r.res.ParentTier = "off (--parent-tier off): edges go to the origin directly"
		return nil
	}
	probe := newLabTopology(r.o.Delays, true)
	file := filepath.Join(r.dir, "parent-probe.toml")
	cfg := probe.proxyConfig(probe.edges[0], filepath.Join(r.dir, "probe"), []string{netip.AddrPortFrom(labParentAddr, labHTTPPort).String()}, nil)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	out, err := exec.CommandContext(ctx, r.o.Binary, "config", "check", "--config", file).CombinedOutput()
	if err == nil {
		r.parentTier = true
		r.res.ParentTier = "on: edges send misses to the parent ([proxy.parents])"
		return nil
	}
	why := strings.TrimSpace(string(out))
	if r.o.ParentTier == "on" {
		return fmt.Errorf("lab: --parent-tier on, but this outpost rejects [proxy.parents]: %s", why)
	}
	r.res.ParentTier = "off: this outpost has no parent tier yet ([proxy.parents] rejected: " + why +
		"); the parent runs and is health-checked, but edges go to the origin directly"
	r.progress("parent tier %s", r.res.ParentTier)
	return nil
}

// buildNetwork makes every namespace and link and puts the service addresses in place.
func (r *labRun) buildNetwork() error {
	t := r.topo
	for _, node := range t.nodes() {
		if err := r.net.addNS(node.name); err != nil {
			return err
		}
		if node.svc.IsValid() {
			if err := r.net.addLocal(node.name, node.svc.String()); err != nil {
				return err
			}
		}
	}
	local := map[string]bool{}
	for _, l := range t.links {
		if err := r.net.addVeth(l); err != nil {
			return err
		}
		if len(l.ports) == 0 {
			if err := r.net.addRoute(l.a.name, l.b.svc.String(), l.bAddr.String()); err != nil {
				return err
			}
			continue
		}
		if k := l.a.name + " " + l.b.svc.String(); !local[k] {
			local[k] = true
			if err := r.net.addLocal(l.a.name, l.b.svc.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// startRelays puts a delay line on every link that has ports: in a's namespace, on b's service
// address, relaying to b's end of the link with the link's delay (RTT/2 each way).
func (r *labRun) startRelays() error {
	for _, l := range r.topo.links {
		for _, port := range l.ports {
			ln, err := r.net.listen(l.a.name, netip.AddrPortFrom(l.b.svc, uint16(port)).String())
			if err != nil {
				return fmt.Errorf("lab: delay line %s→%s: %w", l.a.name, l.b.name, err)
			}
			target := netip.AddrPortFrom(l.bAddr, uint16(port)).String()
			dial := r.net.dialer(l.a.name)
			d := NewDelayLineOn(ln, func() (net.Conn, error) { return dial(target) }, Link{Delay: l.rtt / 2, Bandwidth: l.bandwidth})
			r.mu.Lock()
			closed := r.closed
			r.relays = append(r.relays, d)
			r.mu.Unlock()
			if closed {
				return errors.New("lab: interrupted")
			}
		}
	}
	return nil
}

// closeRelays stops every delay line (idempotent): in-flight loads fail at once.
func (r *labRun) closeRelays() {
	r.mu.Lock()
	r.closed = true
	relays := r.relays
	r.relays = nil
	r.mu.Unlock()
	for _, d := range relays {
		d.Close()
	}
}

// startServers writes each server's configuration and starts it in its namespace: the origin
// (`outpost up`: web and FTP), the parent and the edges (`outpost proxy`), the DNS (`outpost
// dns`). It waits for each one's /readyz.
func (r *labRun) startServers(ctx context.Context) error {
	t := r.topo
	type server struct {
		node *labNode
		args []string
		cfg  func(dataDir string) string
	}
	var parents, edges []string // the edges' parents; the parent's purge peers
	if r.parentTier {
		parents = []string{netip.AddrPortFrom(t.parent.svc, labHTTPPort).String()}
		for _, e := range t.edges {
			edges = append(edges, netip.AddrPortFrom(e.svc, labHTTPPort).String())
		}
	}
	servers := []server{
		{t.origin, []string{"up"}, t.originConfig},
		{t.parent, []string{"proxy"}, func(d string) string { return t.proxyConfig(t.parent, d, nil, edges) }},
	}
	for _, e := range t.edges {
		servers = append(servers, server{e, []string{"proxy"}, func(d string) string { return t.proxyConfig(e, d, parents, nil) }})
	}
	servers = append(servers, server{t.dns, []string{"dns"}, func(d string) string { return t.dnsConfig(d, r.o.Delays, r.o.Health) }})
	for _, s := range servers {
		dataDir := filepath.Join(r.dir, s.node.name)
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		file := filepath.Join(r.dir, s.node.name+".toml")
		if err := os.WriteFile(file, []byte(s.cfg(dataDir)), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if err := r.startProc(s.node.name, append(s.args, "--config", file)...); err != nil {
			return err
		}
	}
	for _, s := range servers {
		if err := r.waitReady(ctx, s.node.name); err != nil {
			return err
		}
	}
	return nil
}

// startProc starts `outpost ARGS` in node's namespace, its output in <dir>/<node>.log.
func (r *labRun) startProc(node string, args ...string) error {
	logFile := filepath.Join(r.dir, node+".log")
	f, err := os.Create(logFile)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	cmd := r.net.command(node, append([]string{r.o.Binary}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("lab: start %s: %w", node, err)
	}
	p := &labProc{name: node, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	r.mu.Lock()
	r.procs[node] = p
	r.mu.Unlock()
	return nil
}

// waitReady polls a server's /readyz inside its namespace until it answers 200, the process
// exits or 20 s pass.
func (r *labRun) waitReady(ctx context.Context, node string) error {
	p := r.procs[node]
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _, err := r.adminGET(node, "/readyz")
		if err == nil && st == 200 {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("lab: %s exited before it was ready (%v): %s", node, p.err, logTail(p.log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s not ready within 20s (last: %d %v): %s", node, st, err, logTail(p.log))
		}
	}
}

// logTail returns the end of a log file for an error message.
func logTail(file string) string {
	b, _ := os.ReadFile(file)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// adminGET fetches a path from a server's admin listener on its namespace's loopback.
func (r *labRun) adminGET(node, path string) (int, []byte, error) {
	return r.exchange(node, "127.0.0.1:"+strconv.Itoa(labAdminPort), "GET "+path+" HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
}

// exchange sends one raw HTTP/1.1 request from node's namespace and reads the response.
func (r *labRun) exchange(node, addr, req string) (int, []byte, error) {
	c, err := r.net.dialer(node)(addr)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return 0, nil, err
	}
	resp := &response{}
	if err := newRespReader(c, true).read(strings.HasPrefix(req, "HEAD "), resp); err != nil {
		return 0, nil, err
	}
	return resp.status, resp.body, nil
}

// stopProc stops one server: SIGTERM, SIGKILL after 3 s (kill: SIGKILL at once).
func (r *labRun) stopProc(p *labProc, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cleanup stops the delay lines and every server, then removes the links and namespaces.
func (r *labRun) cleanup() error {
	r.closeRelays()
	r.mu.Lock()
	procs := make([]*labProc, 0, len(r.procs))
	for _, p := range r.procs {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); r.stopProc(p, false) }()
	}
	wg.Wait()
	return r.net.teardown()
}

// roundSeconds rounds a duration to milliseconds, in seconds.
func roundSeconds(d time.Duration) float64 { return float64(d.Round(time.Millisecond)) / 1e9 }
