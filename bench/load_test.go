package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func baseLoad(urls ...string) LoadOptions {
	return LoadOptions{URLs: urls, Connections: 2, Pipeline: 1, KeepAlive: true, Timeout: 5 * time.Second}
}

func TestLoadClosedLoop(t *testing.T) {
	origin := testOrigin(t)
	for _, tc := range []struct {
		name string
		edit func(*LoadOptions)
	}{
		{"keep-alive", func(o *LoadOptions) {}},
		{"pipelined", func(o *LoadOptions) { o.Pipeline = 8; o.Connections = 3 }},
		{"new connection per request", func(o *LoadOptions) { o.KeepAlive = false }},
		{"http/1.0", func(o *LoadOptions) { o.HTTP10 = true; o.KeepAlive = false }},
		{"http/1.0 keep-alive", func(o *LoadOptions) { o.HTTP10 = true }},
		{"url list", func(o *LoadOptions) { o.URLs = append(o.URLs, origin+"/page/3", origin+"/bytes/10") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := baseLoad(origin + "/bytes/1000")
			o.Requests = 300
			tc.edit(&o)
			r, err := RunLoad(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests != 300 || r.Status["200"] != 300 || len(r.Errors) != 0 {
				t.Fatalf("requests %d, status %v, errors %v; want 300 × 200 and no errors", r.Requests, r.Status, r.Errors)
			}
			if r.Latency.Count != 300 || r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 {
				t.Errorf("implausible latency summary %+v", r.Latency)
			}
		})
	}
}

func TestLoadDuration(t *testing.T) {
	o := baseLoad(testOrigin(t) + "/bytes/100")
	o.Duration = 200 * time.Millisecond
	start := time.Now()
	r, err := RunLoad(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("a 200ms run took %v", el)
	}
	if r.Requests == 0 || len(r.Errors) != 0 {
		t.Errorf("requests %d errors %v", r.Requests, r.Errors)
	}
}

// TestLoadOpenLoopCorrectsOmission runs an open loop faster than a slow server answers: the
// latencies, measured from each request's intended send time, include the queueing a closed
// loop would hide.
func TestLoadOpenLoopCorrectsOmission(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // the server's service time under test
		w.Write([]byte("ok"))
	}))
	defer slow.Close()
	o := baseLoad(slow.URL + "/")
	o.Connections, o.Requests, o.Rate = 1, 15, 200 // 5 ms apart, served 20 ms apart
	r, err := RunLoad(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OpenLoop || r.Requests != 15 {
		t.Fatalf("open loop %v, requests %d", r.OpenLoop, r.Requests)
	}
	// The last request was due at 70 ms and answered at about 300 ms.
	if r.Latency.Max < 150*time.Millisecond || r.Latency.P50 < 60*time.Millisecond {
		t.Errorf("latencies %+v do not show the queueing", r.Latency)
	}
}

func TestLoadCacheStatus(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%4 == 0 {
			w.Header().Set("Cache-Status", "Outpost; fwd=miss; stored")
		} else {
			w.Header().Set("Cache-Status", "Outpost; hit")
		}
		w.Write(make([]byte, 100))
	}))
	defer srv.Close()
	o := baseLoad(srv.URL + "/x")
	o.Connections, o.Requests = 1, 100
	r, err := RunLoad(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.CacheHits != 75 || r.CacheMisses != 25 || math.Abs(r.HitRatio-0.75) > 1e-9 {
		t.Errorf("hits %d misses %d ratio %v, want 75 25 0.75", r.CacheHits, r.CacheMisses, r.HitRatio)
	}
}

func TestLoadZipf(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.PathValue("i"))
		mu.Lock()
		seen[i]++
		mu.Unlock()
	}))
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/o/{i}", srv.Config.Handler)
	srv.Config.Handler = mux
	o := baseLoad(srv.URL + "/o/{i}")
	o.ZipfK, o.ZipfAlpha, o.Requests, o.Seed = 20, 1, 2000, 7
	r, err := RunLoad(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status["200"] != 2000 {
		t.Fatalf("status %v errors %v", r.Status, r.Errors)
	}
	if seen[1] <= seen[2] || seen[2] <= seen[10] || seen[0] != 0 || seen[21] != 0 {
		t.Errorf("ranks not Zipf-ordered or out of range: %v", seen)
	}
}

func TestZipfDistribution(t *testing.T) {
	for _, alpha := range []float64{0, 0.8, 1.2} {
		z := newZipf(10, alpha)
		r := rand.New(rand.NewPCG(1, 1))
		counts := make([]int, 11)
		const draws = 200000
		for range draws {
			counts[z.draw(r)]++
		}
		norm := 0.0
		for i := 1; i <= 10; i++ {
			norm += math.Pow(float64(i), -alpha)
		}
		for i := 1; i <= 10; i++ {
			want := math.Pow(float64(i), -alpha) / norm * draws
			if math.Abs(float64(counts[i])-want) > 0.05*want {
				t.Errorf("α=%v rank %d: %d draws, want %.0f ±5%%", alpha, i, counts[i], want)
			}
		}
	}
}

func TestLoadOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*LoadOptions)
	}{
		{"no urls", func(o *LoadOptions) { o.URLs = nil }},
		{"no connections", func(o *LoadOptions) { o.Connections = 0 }},
		{"neither -d nor -n", func(o *LoadOptions) { o.Requests = 0 }},
		{"negative duration", func(o *LoadOptions) { o.Duration = -time.Second }},
		{"negative -n", func(o *LoadOptions) { o.Requests = -1 }},
		{"pipeline without keep-alive", func(o *LoadOptions) { o.Pipeline, o.KeepAlive = 4, false }},
		{"pipeline zero", func(o *LoadOptions) { o.Pipeline = 0 }},
		{"rate with pipeline", func(o *LoadOptions) { o.Rate, o.Pipeline = 10, 2 }},
		{"https through a proxy", func(o *LoadOptions) { o.URLs, o.Proxy = []string{"https://x/"}, "http://127.0.0.1:2" }},
		{"streams without h2", func(o *LoadOptions) { o.Streams = 4 }},
		{"h2 with pipeline", func(o *LoadOptions) { o.H2, o.Pipeline = true, 4 }},
		{"h2 without keep-alive", func(o *LoadOptions) { o.H2, o.KeepAlive = true, false }},
		{"h2 with http/1.0", func(o *LoadOptions) { o.H2, o.HTTP10 = true, true }},
		{"h2 through a proxy", func(o *LoadOptions) { o.H2, o.Proxy = true, "http://127.0.0.1:2" }},
		{"too many streams", func(o *LoadOptions) { o.H2, o.Streams = true, 5000 }},
		{"cacert missing", func(o *LoadOptions) { o.TLS.CACert = "/nonexistent/ca.pem" }},
		{"cacert and insecure", func(o *LoadOptions) { o.TLS.CACert, o.TLS.Insecure = "/etc/hostname", true }},
		{"unknown curve", func(o *LoadOptions) { o.TLS.Curves = []string{"x448"} }},
		{"negative alpha", func(o *LoadOptions) { o.ZipfK, o.ZipfAlpha = 3, -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := baseLoad("http://127.0.0.1:1/")
			o.Requests = 1
			tc.edit(&o)
			if err := o.Validate(); !IsUsage(err) {
				t.Fatalf("Validate() = %v, want a usage error", err)
			}
		})
	}
}
