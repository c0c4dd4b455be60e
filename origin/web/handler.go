package web

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// handler routes a request to a synthetic endpoint or to the static files, applying the cache
// policy first and logging and counting afterwards.
type handler struct {
	cfg     config.WebConfig
	root    *os.Root
	policy  policy
	metrics *metrics
	log     *slog.Logger
	mutable *mutableStore
	pages   *pageCache
}

// newHandler wires the routes' shared state.
func newHandler(cfg config.WebConfig, root *os.Root, m *metrics, log *slog.Logger) *handler {
	return &handler{
		cfg:     cfg,
		root:    root,
		policy:  newPolicy(cfg.CachePolicy),
		metrics: m,
		log:     log,
		mutable: newMutableStore(cfg.MaxMutableNames, time.Now),
		pages:   newPageCache(),
	}
}

// route says which endpoint served a request, for the metrics label and the access log.
type route int

// The routes, in the order of routeNames.
const (
	routeStatic route = iota
	routeBytes
	routeDelay
	routePage
	routeStatus
	routeHeaders
	routeMutable
	numRoutes
)

// routeNames are the label values of the routes.
var routeNames = [numRoutes]string{"static", "bytes", "delay", "page", "status", "headers", "mutable"}

// String returns the route's label value.
func (r route) String() string { return routeNames[r] }

// ServeHTTP applies the cache policy, dispatches, then records the access.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w, status: http.StatusOK}
	h.policy.apply(rw.Header(), r.URL.Path, start)
	route := h.dispatch(rw, r, r.URL.Path)
	h.metrics.observe(route, rw.status, rw.bytes, time.Since(start))
	if h.cfg.AccessLog {
		h.log.Info("access", "remote", r.RemoteAddr, "method", r.Method, "uri", r.RequestURI,
			"proto", r.Proto, "status", rw.status, "bytes", rw.bytes, "route", route.String(),
			"duration", time.Since(start))
	}
}

// dispatch serves path (the request's, or what follows /delay/MS) and returns the route name.
func (h *handler) dispatch(w http.ResponseWriter, r *http.Request, path string) route {
	first, rest := splitFirst(path)
	switch first {
	case "bytes":
		h.serveBytes(w, r, rest)
		return routeBytes
	case "delay":
		h.serveDelay(w, r, rest)
		return routeDelay
	case "page":
		h.servePage(w, r, rest)
		return routePage
	case "status":
		serveStatus(w, r, rest)
		return routeStatus
	case "headers":
		serveHeaders(w, r, rest)
		return routeHeaders
	case "mutable":
		h.serveMutable(w, r, rest)
		return routeMutable
	}
	h.serveStatic(w, r, path)
	return routeStatic
}

// splitFirst splits "/a/b/c" into "a" and "/b/c" ("/a" gives "a" and "").
func splitFirst(path string) (first, rest string) {
	p := strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// allowRead answers 405 unless the method is GET or HEAD.
func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	httpError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here")
	return false
}

// httpError writes a short text/plain error, without the cache policy's headers.
func httpError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Del("Expires")
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Set("Cache-Control", "no-store")
	http.Error(w, msg, code)
}

// recorder captures the status and body size for the access log and metrics, keeping
// io.ReaderFrom so file bodies still go out with sendfile.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

// WriteHeader records the final status.
func (rw *recorder) WriteHeader(code int) {
	if !rw.wroteHeader && code >= 200 {
		rw.status = code
		rw.wroteHeader = true
	}
	rw.ResponseWriter.WriteHeader(code)
}

// Write counts body bytes.
func (rw *recorder) Write(p []byte) (int, error) {
	rw.wroteHeader = true
	n, err := rw.ResponseWriter.Write(p)
	rw.bytes += int64(n)
	return n, err
}

// ReadFrom lets net/http use sendfile for files while counting bytes.
func (rw *recorder) ReadFrom(src io.Reader) (int64, error) {
	rw.wroteHeader = true
	n, err := io.Copy(rw.ResponseWriter, src)
	rw.bytes += n
	return n, err
}

// Unwrap gives http.ResponseController the underlying writer.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
