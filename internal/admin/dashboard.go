package admin

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The live dashboard (GET /): one page, its script and stylesheet embedded in the binary, fed
// by the sampler through server-sent events (GET /dashboard/stream) or polling
// (GET /dashboard/samples?since=SEQ), and by the components' own JSON endpoints (/proxy/top,
// /proxy/routes, /dns/edges), which the page polls. It is read-only: it only issues GETs, and
// what it shows the admin listener already serves.

//go:embed dashboard/index.html dashboard/app.js dashboard/style.css
var dashboardFiles embed.FS

// DashboardOptions configures the live dashboard.
type DashboardOptions struct {
	// Interval is the sampling interval of the charts.
	Interval time.Duration
	// Window is how much history the charts keep (and show).
	Window time.Duration
	// Gatherer is what the charts sample (nil: the server's, which /metrics serves). Sampling
	// a registry without the process collector is much cheaper: it reads /proc.
	Gatherer prometheus.Gatherer
}

// maxStreams bounds the event streams open at once; more get 503.
const maxStreams = 16

// streamWriteTimeout is how long one event may take to reach a client before the stream ends.
const streamWriteTimeout = 10 * time.Second

// dashboard serves the page and the sample stream.
type dashboard struct {
	opts    DashboardOptions
	smp     *sampler
	streams chan struct{} // one token per open stream
	stop    chan struct{} // closed when the admin server shuts down
	stopped chan struct{} // closed when sampling has ended
	once    sync.Once
}

// MountDashboard serves the live dashboard at / and starts sampling when the server serves.
// Call it before Serve.
func (s *Server) MountDashboard(opts DashboardOptions) {
	g := opts.Gatherer
	if g == nil {
		g = s.gatherer
	}
	d := &dashboard{opts: opts, smp: newSampler(g, dashboardSeries, opts.Interval, opts.Window),
		streams: make(chan struct{}, maxStreams), stop: make(chan struct{}), stopped: make(chan struct{})}
	static, _ := fs.Sub(dashboardFiles, "dashboard") // the embedded directory exists: Sub cannot fail
	s.mux.HandleFunc("GET /{$}", d.servePage)
	s.mux.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/static/", noStore(http.FileServerFS(static))))
	s.mux.HandleFunc("GET /dashboard/samples", d.serveSamples)
	s.mux.HandleFunc("GET /dashboard/stream", d.serveStream)
	s.srv.RegisterOnShutdown(d.close)
	s.dash = d
}

// run samples until the server shuts down.
func (d *dashboard) run() {
	defer close(d.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-d.stop
		cancel()
	}()
	d.smp.run(ctx)
}

// close ends sampling and every open stream (http.Server.Shutdown does not wait for them).
func (d *dashboard) close() { d.once.Do(func() { close(d.stop) }) }

// securityHeaders are sent with the page: nothing but its own files, no framing.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// noStore sends the static files with the security headers, uncached (they change with the
// binary, and are small).
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		h.ServeHTTP(w, r)
	})
}

func (d *dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	http.ServeFileFS(w, r, dashboardFiles, "dashboard/index.html")
}

// history is the first message of a stream and the answer to /dashboard/samples.
type history struct {
	IntervalMS int64    `json:"interval_ms"`
	WindowMS   int64    `json:"window_ms"`
	Seq        uint64   `json:"seq"`
	Samples    []sample `json:"samples"`
}

func (d *dashboard) history(since uint64) (history, <-chan struct{}) {
	rows, seq, wake := d.smp.since(since)
	if rows == nil {
		rows = []sample{}
	}
	return history{IntervalMS: d.opts.Interval.Milliseconds(), WindowMS: d.opts.Window.Milliseconds(), Seq: seq, Samples: rows}, wake
}

// serveSamples is GET /dashboard/samples?since=SEQ: the held samples newer than SEQ (all
// without it), for clients that poll.
func (d *dashboard) serveSamples(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.FormValue("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "since must be a sample sequence number", http.StatusBadRequest)
			return
		}
		since = n
	}
	h, _ := d.history(since)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(h)
}

// serveStream is GET /dashboard/stream, server-sent events: "history" with every held sample,
// then one "sample" per sampling interval. A stream whose client stops reading ends after
// streamWriteTimeout; a client that reconnects starts again with the history.
func (d *dashboard) serveStream(w http.ResponseWriter, r *http.Request) {
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		http.Error(w, "too many dashboard streams open", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	h, wake := d.history(0)
	if send(w, rc, "history", h) != nil {
		return
	}
	seq := h.Seq
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.stop:
			return
		case <-wake:
		}
		var rows []sample
		rows, seq, wake = d.smp.since(seq)
		for _, row := range rows {
			if send(w, rc, "sample", row) != nil {
				return
			}
		}
	}
}

// send writes one event and flushes it within streamWriteTimeout.
func send(w http.ResponseWriter, rc *http.ResponseController, event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("dashboard: encoding %s: %w", event, err)
	}
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	return rc.Flush()
}
