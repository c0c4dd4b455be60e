package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/outpost-proxy/outpost/cache"
)

// TestStatusEndpoints: /proxy/top ranks URLs by requests and by bytes without their query
// strings, outpost_proxy_served_bytes_total splits bytes by source, and /proxy/routes shows an
// origin that refused a connection as down until its fail_timeout ends.
func TestStatusEndpoints(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprint(w, strings.Repeat("x", 1000*len(r.URL.Path)))
	})
	section := fmt.Sprintf("[proxy.upstream]\nfail_timeout = \"1h\"\n[[proxy.routes]]\nhost = \"dead.test\"\norigins = [\"http://user:secret@127.0.0.1:1\"]\n[[proxy.routes]]\nhost = \"*\"\norigins = [%q]\n", o.URL)
	p := startProxy(t, section, Options{Cache: newRealCache(t)})
	c := dialRaw(t, p.addr)
	for _, req := range []struct {
		target, host string
		status       int
	}{
		{"/a?token=secret1", "site.test", 200}, {"/a?token=secret2", "site.test", 200}, {"/a?token=secret2", "site.test", 200},
		{"/long/path", "site.test", 200}, {"/", "dead.test", 502},
	} {
		c.send("GET " + req.target + " HTTP/1.1\r\nHost: " + req.host + "\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != req.status {
			t.Fatalf("GET %s: %d, want %d", req.target, resp.StatusCode, req.status)
		}
	}
	get := func(path string, v any) string {
		rec := httptest.NewRecorder()
		p.env.Admin.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), v) != nil {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	// A response large enough to leave in one writev reaches the client before its slot
	// records it (finish): wait, with a deadline, until all five are counted.
	var top map[string]topList
	body := get("/proxy/top", &top)
	for deadline := time.Now().Add(5 * time.Second); top["requests"].Total < 5 && time.Now().Before(deadline); {
		runtime.Gosched()
		body = get("/proxy/top", &top)
	}
	if strings.Contains(body, "secret") || strings.Contains(body, "token") {
		t.Errorf("/proxy/top shows a query string:\n%s", body)
	}
	if r := top["requests"]; r.Total != 5 || len(r.Top) != 3 || r.Top[0].Key != "http://site.test/a" || r.Top[0].Weight != 3 {
		t.Errorf("top by requests: %+v", r)
	}
	if b := top["bytes"]; len(b.Top) != 3 || b.Top[0].Key != "http://site.test/long/path" {
		t.Errorf("top by bytes: %+v", b)
	}

	served := map[string]float64{}
	fams, _ := p.env.Metrics.(prometheus.Gatherer).Gather()
	for _, f := range fams {
		if f.GetName() == "outpost_proxy_served_bytes_total" {
			for _, m := range f.GetMetric() {
				served[labelOf(m, "source")] = m.GetCounter().GetValue()
			}
		}
	}
	if served["cache"] <= 0 || served["origin"] <= 0 || served["local"] <= 0 || served["tunnel"] != 0 {
		t.Errorf("served bytes by source: %v", served)
	}

	var routes []routeStatus
	body = get("/proxy/routes", &routes)
	if strings.Contains(body, "secret") {
		t.Errorf("/proxy/routes shows an origin's password:\n%s", body)
	}
	if len(routes) != 2 || routes[0].Host != "dead.test" || routes[0].Origins[0].Up || routes[0].Origins[0].DownUntil.Before(time.Now().Add(50*time.Minute)) ||
		!routes[1].Origins[0].Up || routes[1].Origins[0].URL != o.URL {
		t.Errorf("routes: %s", body)
	}
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// BenchmarkStatusRecord is the per-request cost of the status hook (two tracker updates and
// a counter), on a working set of 300 URLs.
func BenchmarkStatusRecord(b *testing.B) {
	st, err := newStatus(&Server{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	slots := make([]*slot, 300)
	for i := range slots {
		r := httptest.NewRequest("GET", fmt.Sprintf("/static/object/%d.js?v=1", i), nil)
		r.Host = "www.cdn.test"
		slots[i] = &slot{slotState: slotState{req: r, bytesOut: 1234, outcome: cache.Outcome{Hit: true}}}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st.record(slots[i%len(slots)])
	}
}

// BenchmarkHitStatusHook measures 1 KiB keep-alive hits with the status hook and without it
// (run with -count N: the two alternate, so the machine's load touches both alike).
func BenchmarkHitStatusHook(b *testing.B) {
	b.Run("on", func(b *testing.B) { benchRealCache(b, 1) })
	b.Run("off", func(b *testing.B) { benchRealCache(b, 1, func(s *Server) { s.status = nil }) })
}
