//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// labName is the steered name every region resolves.
const labName = "www.cdn.test."

// measure runs the phases: link RTTs, steering, cold and warm page loads, failover, purge.
func (r *labRun) measure(ctx context.Context) error {
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"links", r.measureLinks},
		{"steering", r.waitSteering},
		{"cold and warm page loads", r.loadPhases},
		{"failover", r.failover},
		{"purge", r.purge},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := s.f(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("lab %s: %w", s.name, err)
		}
		r.progress("%s done in %s", s.name, time.Since(t0).Round(time.Millisecond))
	}
	r.noteGaps()
	return nil
}

// noteGaps says plainly where the result falls short of a CDN with a parent tier and purge
// fan-out, and why.
func (r *labRun) noteGaps() {
	res := r.res
	if n := res.OriginRequestsPerObject; n > 1 {
		why := "the edges have no parent tier yet, so each edge fetches each object from the origin itself"
		if r.parentTier {
			why = "the parent did not collapse the edges' concurrent misses into one"
		}
		res.Notes = append(res.Notes, fmt.Sprintf("the origin saw each object up to %d times in the cold phase: %s.", n, why))
	}
	if p := res.Purge; !p.Converged {
		res.Notes = append(res.Notes, fmt.Sprintf("one PURGE at %s left the object in %s: PURGE removes it only from the cache it reaches (no purge fan-out to the other edges and the parent yet).",
			p.PurgedAt, strings.Join(p.StillServing, ", ")))
	}
	if f := res.Failover; f.Error != "" {
		res.Notes = append(res.Notes, "failover: "+f.Error)
	}
}

// linkProbe is a request answered by the far end itself, never forwarded: a PURGE of a URL no
// cache holds (404 from the proxy's cache) or a one-byte object from the origin.
func linkProbe(l *labLink) string {
	if l.b.name == "origin" {
		return "GET /bytes/1 HTTP/1.1\r\nHost: origin.cdn.test\r\n\r\n"
	}
	return "PURGE /outpost-lab-link-probe HTTP/1.1\r\nHost: www.cdn.test\r\n\r\n"
}

// measureLinks measures every delayed link's RTT through its delay line: on one open
// connection, the fastest of five request/response round trips after the first (the first also
// pays the emulated handshake).
func (r *labRun) measureLinks(ctx context.Context) error {
	links := r.topo.links
	out := make([]LabLinkResult, len(links))
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		out[i] = LabLinkResult{A: l.a.name, B: l.b.name, AAddr: l.aAddr.String(), BAddr: l.bAddr.String(),
			RTTms: ms(float64(l.rtt)), Use: l.use}
		if len(l.ports) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := r.linkRTT(l)
			if err != nil {
				errs[i] = fmt.Errorf("%s→%s: %w", l.a.name, l.b.name, err)
			}
			out[i].MeasuredMS, l.measured = ms(float64(d)), d
		}()
	}
	wg.Wait()
	r.res.Links = out
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.checkFTP()
}

// checkFTP reads the origin's FTP greeting through the parent ↔ origin link: the FTP server is
// part of the origin, reachable over the lab's links (control and passive data ports relayed).
func (r *labRun) checkFTP() error {
	c, err := r.net.dialer(r.topo.parent.name)(netip.AddrPortFrom(r.topo.origin.svc, labFTPPort).String())
	if err != nil {
		return fmt.Errorf("origin FTP: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t0 := time.Now()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		return fmt.Errorf("origin FTP greeting %q: %v", strings.TrimSpace(line), err)
	}
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("the origin's FTP server greeted the parent over their link (%q, %.1f ms after connecting).",
		strings.TrimSpace(line), ms(float64(time.Since(t0)))))
	return nil
}

// linkRTT times round trips over one link.
func (r *labRun) linkRTT(l *labLink) (time.Duration, error) {
	c, err := r.net.dialer(l.a.name)(netip.AddrPortFrom(l.b.svc, labHTTPPort).String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	rr := newRespReader(c, false)
	req := []byte(linkProbe(l))
	best := time.Duration(-1)
	for i := range 6 {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return 0, err
		}
		var resp response
		if err := rr.read(false, &resp); err != nil {
			return 0, err
		}
		if d := time.Since(t0); i > 0 && (best < 0 || d < best) {
			best = d
		}
	}
	return best, nil
}

// resolve asks the lab's DNS, from a region's namespace, for www.cdn.test and returns the
// edge it answered.
func (r *labRun) resolve(region *labNode) (*labNode, error) {
	c, err := r.net.dialUDP(region.name, netip.AddrPortFrom(r.topo.dns.svc, labDNSPort).String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	m := new(dns.Msg)
	m.SetQuestion(labName, dns.TypeA)
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	in, err := co.ReadMsg()
	if err != nil {
		return nil, err
	}
	for _, rr := range in.Answer {
		a, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		for _, e := range r.topo.edges {
			if a.A.Equal(net.IP(e.svc.AsSlice())) {
				return e, nil
			}
		}
		return nil, fmt.Errorf("answer %s is no edge of the lab", a.A)
	}
	return nil, fmt.Errorf("no A record for %s (rcode %s)", labName, dns.RcodeToString[in.Rcode])
}

// waitSteering waits (up to 15 s) until the DNS answers every region with its near edge —
// every edge passed its first health check — and records the answers. When a region is still
// answered otherwise at the deadline, the run goes on with that answer and notes the DNS's
// view of the edges (GET /dns/edges), so the table shows what happened.
func (r *labRun) waitSteering(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		answers := make([]string, len(r.topo.regions))
		ok := true
		var lastErr error
		for i, rn := range r.topo.regions {
			e, err := r.resolve(rn)
			if err != nil {
				ok, lastErr = false, fmt.Errorf("%s: %w", rn.name, err)
				continue
			}
			answers[i] = e.name
			ok = ok && e == r.topo.edges[i]
		}
		if ok || (time.Now().After(deadline) && lastErr == nil) {
			for i, rn := range r.topo.regions {
				r.res.Regions = append(r.res.Regions, LabRegion{Name: rn.name, EdgeExpected: r.topo.edges[i].name, EdgeAnswered: answers[i]})
			}
			if !ok {
				_, view, _ := r.adminGET(r.topo.dns.name, "/dns/edges")
				r.res.Notes = append(r.res.Notes, "after 15 s some regions were still not answered with their near edge; the DNS's view of the edges: "+strings.TrimSpace(string(view)))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return lastErr
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleepCtx waits d or until ctx ends (a poll interval, never a synchronisation).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pageLoad is one load of the demo page.
type pageLoad struct {
	d     time.Duration
	hits  TierHits
	paths []string // in the order the responses came
	bytes int64    // response bytes, for the bandwidth term of the model
}

// loadPage loads the demo page and its objects, pipelined on a new connection, from a region
// through an edge, and counts the responses' tiers.
func (r *labRun) loadPage(region *labNode, edge *labNode) (pageLoad, error) {
	var mu sync.Mutex
	var pl pageLoad
	pc := &pageClient{addr: netip.AddrPortFrom(edge.svc, labHTTPPort).String(), host: "www.cdn.test",
		rtt: r.topo.link(region, edge).rtt, dialer: r.net.dialer(region.name),
		onResponse: func(path string, resp *response) {
			mu.Lock()
			defer mu.Unlock()
			pl.paths = append(pl.paths, path)
			pl.hits.add(resp.cacheStatus)
		}}
	d, err := fetchPage(pc, StrategyPipelined, r.page, "", 1)
	pl.d, pl.bytes = d, pc.bytes.Load()
	return pl, err
}

// add counts one response by its Cache-Status members: the last is the edge, the one before it
// the parent.
func (h *TierHits) add(cacheStatus string) {
	members := strings.Split(cacheStatus, ",")
	hit := func(i int) bool {
		if i < 0 {
			return false
		}
		return parseCacheStatus([]byte(members[i])) == cacheHit
	}
	n := len(members) - 1
	switch {
	case hit(n):
		h.Edge++
	case n >= 1 && hit(n-1):
		h.Parent++
	default:
		h.Miss++
	}
}

// models returns the textbook cold and warm times of region r loading the page from edge e:
// the scorecard's pipelined model through a proxy, 3 RTT to the edge, plus 4 RTT of the
// upstream path when the edge's cache is cold. measured takes the links' measured RTTs
// instead of the table's (the delay lines' own overhead included).
func (r *labRun) models(region, edge *labNode, measured bool, bytes int64) (cold, warm time.Duration, coldF, warmF string) {
	rtt := func(a, b *labNode) time.Duration {
		l := r.topo.link(a, b)
		if measured {
			return l.measured
		}
		return l.rtt
	}
	up := rtt(edge, r.topo.origin)
	if r.parentTier {
		up = rtt(edge, r.topo.parent) + rtt(r.topo.parent, r.topo.origin)
	}
	o := ScorecardOptions{N: r.o.PageObjects, RTT: rtt(region, edge), OriginRTT: up, Target: "proxy", ProxyCache: "cold",
		Bandwidth: r.topo.link(region, edge).bandwidth}
	cold, coldF = model(o, StrategyPipelined, bytes)
	o.ProxyCache = "warm"
	warm, warmF = model(o, StrategyPipelined, bytes)
	return cold, warm, coldF + fmt.Sprintf(" (RTT %s, RTTo %s)", o.RTT, up), warmF + fmt.Sprintf(" (RTT %s)", o.RTT)
}

// loadPhases loads the page from every region at once, cold, then WarmRuns times warm, and
// reads the origin's access log for the cold phase's origin requests.
func (r *labRun) loadPhases(ctx context.Context) error {
	regions := r.topo.regions
	cold := make([]time.Duration, len(regions))
	pageBytes := make([]int64, len(regions))
	warm := make([][]time.Duration, len(regions))
	var coldPaths []string
	var mu sync.Mutex
	// The cold loads run at once (three regions warming the same objects); the warm ones one
	// region at a time, so that they measure the links rather than the machine's two cores.
	run := func(phase string, each func(i int) error) error {
		errs := make([]error, len(regions))
		var wg sync.WaitGroup
		for i := range regions {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = each(i) }()
			if phase == "warm" {
				wg.Wait()
			}
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		return ctx.Err()
	}
	err := run("cold", func(i int) error {
		reg := &r.res.Regions[i]
		pl, err := r.loadPage(regions[i], r.edgeByName(reg.EdgeAnswered))
		cold[i], reg.ColdHits, pageBytes[i] = pl.d, pl.hits, pl.bytes
		mu.Lock()
		if coldPaths == nil {
			coldPaths = pl.paths
		}
		mu.Unlock()
		return err
	})
	if err != nil {
		return err
	}
	warmStart := time.Now()
	for range r.o.WarmRuns {
		if err := run("warm", func(i int) error {
			reg := &r.res.Regions[i]
			pl, err := r.loadPage(regions[i], r.edgeByName(reg.EdgeAnswered))
			warm[i] = append(warm[i], pl.d)
			reg.WarmHits.Edge += pl.hits.Edge
			reg.WarmHits.Parent += pl.hits.Parent
			reg.WarmHits.Miss += pl.hits.Miss
			return err
		}); err != nil {
			return err
		}
	}
	for i := range regions {
		reg := &r.res.Regions[i]
		e := r.edgeByName(reg.EdgeAnswered)
		mc, mw, fc, fw := r.models(regions[i], e, false, pageBytes[i])
		lc, lw, _, _ := r.models(regions[i], e, true, pageBytes[i])
		reg.ModelColdLinksMS, reg.ModelWarmLinksMS = ms(float64(lc)), ms(float64(lw))
		reg.ColdMS, reg.WarmMS = ms(float64(cold[i])), ms(float64(medianDurationOf(warm[i])))
		reg.WarmMinMS = ms(float64(slices.Min(warm[i])))
		reg.ModelColdMS, reg.ModelWarmMS, reg.ModelCold, reg.ModelWarm = ms(float64(mc)), ms(float64(mw)), fc, fw
		reg.WarmRatio = float64(medianDurationOf(warm[i])) / float64(mw)
	}
	if len(coldPaths) > 1 {
		r.objects = coldPaths[1:]
	}
	return r.countOrigin(coldPaths, warmStart)
}

// medianDurationOf is the median of durations (nil: 0).
func medianDurationOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// edgeByName finds an edge node.
func (r *labRun) edgeByName(name string) *labNode {
	for _, e := range r.topo.edges {
		if e.name == name {
			return e
		}
	}
	return nil
}

// originAccess is one line of the origin's JSON access log.
type originAccess struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Remote string    `json:"remote"`
	URI    string    `json:"uri"`
}

// countOrigin reads the origin's access log: requests for the page's URLs logged before the
// warm phase started are the cold phase's, attributed to the edge (or parent) whose link
// address they came from.
func (r *labRun) countOrigin(paths []string, warmStart time.Time) error {
	f, err := os.Open(r.procs["origin"].log)
	if err != nil {
		return err
	}
	defer f.Close()
	from := map[netip.Addr]string{} // a link's a-side address → the node that dials from it
	for _, l := range r.topo.links {
		if l.b == r.topo.origin {
			from[l.aAddr] = l.a.name
		}
	}
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	byURL, byNode := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var a originAccess
		if json.Unmarshal(sc.Bytes(), &a) != nil || a.Msg != "access" || !want[a.URI] || !a.Time.Before(warmStart) {
			continue
		}
		byURL[a.URI]++
		if ap, err := netip.ParseAddrPort(a.Remote); err == nil {
			byNode[from[ap.Addr()]]++
		}
	}
	r.res.OriginRequestsByURL = byURL
	for _, n := range byURL {
		r.res.OriginRequestsPerObject = max(r.res.OriginRequestsPerObject, n)
	}
	for i := range r.res.Regions {
		reg := &r.res.Regions[i]
		reg.OriginRequests = byNode[reg.EdgeAnswered]
	}
	if r.parentTier {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("the parent made %d of the cold phase's origin requests", byNode["parent"]))
	}
	return sc.Err()
}

// failover stops the failing region's edge and times the DNS's move to another edge.
func (r *labRun) failover(ctx context.Context) error {
	fr := r.topo.regions[r.o.FailRegion-1]
	reg := &r.res.Regions[r.o.FailRegion-1]
	edge := r.edgeByName(reg.EdgeAnswered)
	f := &r.res.Failover
	f.EdgeStopped, f.Region, f.BoundSeconds = edge.name, fr.name, roundSeconds(r.o.Health.failBound())
	p := r.procs[edge.name]
	t0 := time.Now()
	p.cmd.Process.Signal(syscall.SIGKILL) // the edge dies; no graceful goodbye
	<-p.done
	deadline := t0.Add(r.o.Health.failBound() + 10*time.Second)
	var after *labNode
	for {
		e, err := r.resolve(fr)
		if err == nil && e != edge {
			after = e
			break
		}
		if time.Now().After(deadline) {
			f.Error = fmt.Sprintf("still answered %s after %s", edge.name, time.Since(t0).Round(time.Millisecond))
			f.Seconds = roundSeconds(time.Since(t0))
			return nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	f.Seconds, f.EdgeAfter = roundSeconds(time.Since(t0)), after.name
	pl, err := r.loadPage(fr, after)
	f.PageOK, f.PageMS = err == nil, ms(float64(pl.d))
	if err != nil {
		f.Error = err.Error()
	}
	_, mw, _, _ := r.models(fr, after, false, pl.bytes)
	f.ModelMS = ms(float64(mw))
	return nil
}

// purgeDeadline is how long the purge phase waits for every tier to drop the object.
const purgeDeadline = 1500 * time.Millisecond

// purge sends one PURGE for the page's first object to the edge now serving the failover
// region, then asks every running tier — edges and parent — whether it still serves the object
// from its cache, until none does or purgeDeadline passes.
func (r *labRun) purge(ctx context.Context) error {
	fr := r.topo.regions[r.o.FailRegion-1]
	at := r.edgeByName(r.res.Failover.EdgeAfter)
	if at == nil {
		return errors.New("no edge serves the failover region")
	}
	if len(r.objects) == 0 {
		return errors.New("the page had no objects")
	}
	obj := r.objects[0]
	pr := &r.res.Purge
	pr.URL, pr.PurgedAt = "http://www.cdn.test"+obj, at.name
	type tier struct {
		name string
		from *labNode
		node *labNode
	}
	var tiers []tier
	for _, e := range r.topo.edges {
		if p := r.procs[e.name]; !exited(p) {
			tiers = append(tiers, tier{e.name, fr, e})
		}
	}
	tiers = append(tiers, tier{"parent", at, r.topo.parent})
	for _, t := range tiers {
		pr.TiersChecked = append(pr.TiersChecked, t.name)
	}
	edgeAddr := netip.AddrPortFrom(at.svc, labHTTPPort).String()
	t0 := time.Now()
	st, _, err := r.exchange(fr.name, edgeAddr, "PURGE "+obj+" HTTP/1.1\r\nHost: www.cdn.test\r\nConnection: close\r\n\r\n")
	if err != nil {
		return fmt.Errorf("PURGE at %s: %w", at.name, err)
	}
	pr.Status = st
	for {
		var still []string
		for _, t := range tiers {
			st, _, err := r.exchange(t.from.name, netip.AddrPortFrom(t.node.svc, labHTTPPort).String(),
				"GET "+obj+" HTTP/1.1\r\nHost: www.cdn.test\r\nCache-Control: only-if-cached\r\nConnection: close\r\n\r\n")
			if err != nil {
				return fmt.Errorf("asking %s: %w", t.name, err)
			}
			if st == 200 {
				still = append(still, t.name)
			}
		}
		pr.Seconds, pr.TiersStillServing, pr.StillServing = roundSeconds(time.Since(t0)), len(still), still
		if len(still) == 0 {
			pr.Converged = true
			return nil
		}
		if time.Since(t0) > purgeDeadline {
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// exited reports whether a server process has ended.
func exited(p *labProc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
