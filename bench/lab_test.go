package bench

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
)

func validLab() LabOptions {
	return LabOptions{Binary: "outpost", Delays: DefaultLabDelays(), PageObjects: 10, WarmRuns: 3, FailRegion: 1, ParentTier: "auto",
		Health: LabHealth{Interval: time.Second, Timeout: 500 * time.Millisecond, Fall: 2, Rise: 2}}
}

func TestLabOptionsValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*LabOptions)
		flag  string // "" means valid
		isErr bool
	}{
		{"defaults", func(*LabOptions) {}, "", false},
		{"negative delay", func(o *LabOptions) { o.Delays.NearEdge = -time.Millisecond }, "--near", true},
		{"huge delay", func(o *LabOptions) { o.Delays.ParentOrigin = time.Minute }, "--parent-origin", true},
		{"negative bandwidth", func(o *LabOptions) { o.Delays.EdgeBandwidth = -1 }, "--bandwidth", true},
		{"no objects", func(o *LabOptions) { o.PageObjects = 0 }, "--objects", true},
		{"no warm runs", func(o *LabOptions) { o.WarmRuns = 0 }, "--warm-runs", true},
		{"interval too short", func(o *LabOptions) { o.Health.Interval = time.Millisecond }, "--health-interval", true},
		{"timeout beyond interval", func(o *LabOptions) { o.Health.Timeout = 2 * time.Second }, "--health-timeout", true},
		{"fall 0", func(o *LabOptions) { o.Health.Fall = 0 }, "--health-fall", true},
		{"region 4", func(o *LabOptions) { o.FailRegion = 4 }, "--fail-region", true},
		{"parent tier maybe", func(o *LabOptions) { o.ParentTier = "maybe" }, "--parent-tier", true},
		{"no binary", func(o *LabOptions) { o.Binary = "" }, "binary", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := validLab()
			c.edit(&o)
			err := o.Validate()
			if !c.isErr {
				if err != nil {
					t.Fatalf("valid options rejected: %v", err)
				}
				return
			}
			if !IsUsage(err) || !strings.Contains(err.Error(), c.flag) {
				t.Fatalf("got %v, want a usage error naming %s", err, c.flag)
			}
		})
	}
}

// TestLabTopology checks the link table and the address plan: the delays, one /24 per
// link, every region's edges ordered nearest first in the DNS's networks map.
func TestLabTopology(t *testing.T) {
	d := DefaultLabDelays()
	topo := newLabTopology(d, false)
	if len(topo.nodes()) != 9 || len(topo.links) != 22 {
		t.Fatalf("%d nodes, %d links; want 9 and 22", len(topo.nodes()), len(topo.links))
	}
	want := map[string]time.Duration{
		"region1-edge1": 5 * time.Millisecond, "region1-edge2": 60 * time.Millisecond, "region1-edge3": 120 * time.Millisecond,
		"region2-edge2": 5 * time.Millisecond, "region3-edge1": 60 * time.Millisecond,
		"edge1-parent": 30 * time.Millisecond, "parent-origin": 80 * time.Millisecond, "edge2-origin": 110 * time.Millisecond,
	}
	seen := map[string]bool{}
	for _, l := range topo.links {
		if got, ok := want[l.a.name+"-"+l.b.name]; ok && got != l.rtt {
			t.Errorf("%s-%s: rtt %s, want %s", l.a.name, l.b.name, l.rtt, got)
		}
		for _, a := range []string{l.aAddr.String(), l.bAddr.String()} {
			if seen[a] || !strings.HasPrefix(a, "198.18.") {
				t.Errorf("address %s reused or outside 198.18.0.0/15", a)
			}
			seen[a] = true
		}
	}
	cfg := topo.dnsConfig("/tmp/x", d, validLab().Health)
	for _, w := range []string{`prefixes = ["198.18.17.0/24"]` + "\nedges = [\"edge1\", \"edge2\", \"edge3\"]",
		`prefixes = ["198.18.18.0/24"]` + "\nedges = [\"edge2\", \"edge3\", \"edge1\"]",
		`check = "tcp://198.19.0.13:80"`, `interval = "1s"`, `fall = 2`} {
		if !strings.Contains(cfg, w) {
			t.Errorf("DNS configuration lacks %q:\n%s", w, cfg)
		}
	}
	withParent := newLabTopology(d, true)
	if n := len(withParent.links); n != 25 {
		t.Errorf("with the parent tier %d links, want 25 (the parent's purge links to its edges)", n)
	}
	if pc := withParent.proxyConfig(withParent.parent, "/tmp/x", nil, []string{"198.19.0.11:80"}); !strings.Contains(pc, "[proxy.purge]\npeers = [\"198.19.0.11:80\"]") {
		t.Errorf("parent configuration lacks its purge peers:\n%s", pc)
	}
	edge := topo.proxyConfig(topo.edges[0], "/tmp/x", []string{"198.19.0.20:80"}, nil)
	for _, w := range []string{`listen = ["198.19.0.11:80", "198.18.1.2:80", "198.18.4.2:80", "198.18.7.2:80"]`,
		`origins = ["http://198.19.0.30:80"]`, "[proxy.parents]\nservers = [\"198.19.0.20:80\"]", `via_pseudonym = "edge1"`} {
		if !strings.Contains(edge, w) {
			t.Errorf("edge configuration lacks %q:\n%s", w, edge)
		}
	}
}

func TestTierHits(t *testing.T) {
	cases := []struct {
		status string
		want   TierHits
	}{
		{"outpost; hit", TierHits{Edge: 1}},
		{"outpost; fwd=uri-miss", TierHits{Miss: 1}},
		{"outpost; hit, outpost; fwd=uri-miss; stored", TierHits{Parent: 1}},
		{"outpost; fwd=uri-miss, outpost; fwd=uri-miss", TierHits{Miss: 1}},
		{"origin-cache; hit, outpost; hit", TierHits{Edge: 1}},
		{"", TierHits{Miss: 1}},
	}
	for _, c := range cases {
		var h TierHits
		h.add(c.status)
		if h != c.want {
			t.Errorf("%q: %+v, want %+v", c.status, h, c.want)
		}
	}
}

// FuzzTierHits: any Cache-Status value counts exactly one response.
func FuzzTierHits(f *testing.F) {
	for _, s := range []string{"outpost; hit", "a; fwd=miss, b; hit", ",,,", ";;hit", "x; hit=?1, y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var h TierHits
		h.add(s)
		if h.Edge+h.Parent+h.Miss != 1 {
			t.Fatalf("%q counted %+v", s, h)
		}
	})
}

// sampleLab is a lab result as a run without a parent tier produces it.
func sampleLab() *LabResult {
	topo := newLabTopology(DefaultLabDelays(), false)
	res := &LabResult{Prefix: "olab-000000-", ParentTier: "off: no parent tier yet", Page: "http://www.cdn.test/page/10",
		OriginRequestsPerObject: 3, Seconds: 9.5,
		Failover: LabFailover{EdgeStopped: "edge1", Region: "region1", Seconds: 2.1, BoundSeconds: 3.5, EdgeAfter: "edge2", PageOK: true, PageMS: 184, ModelMS: 180},
		Purge:    LabPurge{URL: "http://www.cdn.test/page/10/obj/1", PurgedAt: "edge2", Status: 200, Seconds: 1.5, TiersChecked: []string{"edge2", "edge3", "parent"}, TiersStillServing: 1, StillServing: []string{"edge3"}}}
	for _, l := range topo.links {
		res.Links = append(res.Links, LabLinkResult{A: l.a.name, B: l.b.name, RTTms: ms(float64(l.rtt)), MeasuredMS: ms(float64(l.rtt)) + 0.6, Use: l.use})
	}
	for i := range labRegions {
		res.Regions = append(res.Regions, LabRegion{Name: topo.regions[i].name, EdgeExpected: topo.edges[i].name, EdgeAnswered: topo.edges[i].name,
			ColdMS: 470, ModelColdMS: 455, WarmMS: 18, ModelWarmMS: 15, OriginRequests: 11})
	}
	return res
}

// TestLabReportRenders opens a lab report in headless Chromium and checks that the screenshot
// is not blank: the diagram and the charts drew something.
func TestLabReportRenders(t *testing.T) {
	clienttest.Chromium(t)
	dir := t.TempDir()
	rep := NewReport("outpost lab", []string{"outpost", "lab"}, "test")
	if err := addLabSections(rep, sampleLab()); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "lab.html")
	if err := rep.WriteFile(page); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(page)
	for _, w := range []string{"<svg", "region1", "edge3", "parent", "origin", "120 ms", "stopped (failover)"} {
		if !bytes.Contains(html, []byte(w)) {
			t.Errorf("report lacks %q", w)
		}
	}
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := clienttest.ChromiumCommand(ctx, t, "--window-size=1000,1200", "--screenshot="+shot, "file://"+page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	colors := map[[3]uint32]bool{}
	dark := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[[3]uint32{r >> 12, g >> 12, bl >> 12}] = true
			if r+g+bl < 3*0x8000 {
				dark++
			}
		}
	}
	if len(colors) < 8 || dark < 500 {
		t.Fatalf("the screenshot looks blank: %d colours, %d dark pixels", len(colors), dark)
	}
}
