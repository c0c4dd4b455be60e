package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// setDefaultCacheControl sets Cache-Control unless the cache policy already did.
func setDefaultCacheControl(h http.Header, value string) {
	if _, ok := h["Cache-Control"]; !ok {
		h["Cache-Control"] = []string{value}
	}
}

// sizeError answers a bad or oversized N with 400 and says which.
func sizeError(w http.ResponseWriter, what string, err error) {
	msg := what + ": " + err.Error()
	if errors.Is(err, errTooLarge) {
		msg = what + " exceeds the configured limit"
	}
	httpError(w, http.StatusBadRequest, msg)
}

// serveBytes answers /bytes/N: N deterministic bytes (suffix k or m), cacheable, with a strong
// ETag and range support.
func (h *handler) serveBytes(w http.ResponseWriter, r *http.Request, rest string) {
	if !allowRead(w, r) {
		return
	}
	arg, tail := splitFirst(rest)
	if tail != "" || arg == "" {
		httpError(w, http.StatusNotFound, "want /bytes/N")
		return
	}
	n, err := parseSize(arg, int64(h.cfg.MaxBytes))
	if err != nil {
		sizeError(w, "N", err)
		return
	}
	hd := w.Header()
	hd["Content-Type"] = []string{"application/octet-stream"}
	hd["Etag"] = []string{`"b-` + strconv.FormatInt(n, 10) + `"`}
	setDefaultCacheControl(hd, h.synthCacheControl())
	http.ServeContent(w, r, "", synthEpoch, newPatternReader(0, n))
}

// synthCacheControl is the default Cache-Control of /bytes and /page.
func (h *handler) synthCacheControl() string {
	return "public, max-age=" + strconv.FormatInt(int64(h.cfg.SyntheticMaxAge/time.Second), 10)
}

// serveDelay answers /delay/MS/rest: it waits MS milliseconds, then serves rest (or a short
// text body when rest is empty).
func (h *handler) serveDelay(w http.ResponseWriter, r *http.Request, rest string) {
	arg, tail := splitFirst(rest)
	ms, err := parseCount(arg, int(h.cfg.MaxDelay/time.Millisecond))
	if err != nil {
		sizeError(w, "MS", err)
		return
	}
	if first, _ := splitFirst(tail); first == "delay" {
		httpError(w, http.StatusBadRequest, "nested /delay is not allowed")
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	if tail != "" && tail != "/" {
		h.dispatch(w, r, tail)
		return
	}
	if !allowRead(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	setDefaultCacheControl(w.Header(), "no-store")
	w.Write([]byte("delayed " + strconv.Itoa(ms) + " ms\n"))
}

// servePage answers /page/N (an HTML page embedding N objects) and /page/N/obj/I (object I of
// N, 1-based). ?size= sets the objects' size.
func (h *handler) servePage(w http.ResponseWriter, r *http.Request, rest string) {
	if !allowRead(w, r) {
		return
	}
	arg, tail := splitFirst(rest)
	n, err := parseCount(arg, h.cfg.MaxPageObjects)
	if err != nil {
		sizeError(w, "N", err)
		return
	}
	size, sizeArg, err := h.objectSize(r.URL.RawQuery)
	if err != nil {
		sizeError(w, "size", err)
		return
	}
	switch {
	case tail == "":
		h.serveBasePage(w, r, n, size, sizeArg)
	case strings.HasPrefix(tail, "/obj/"):
		i, err := parseCount(tail[len("/obj/"):], n)
		if err != nil || i < 1 {
			httpError(w, http.StatusNotFound, "no such object on this page")
			return
		}
		h.serveObject(w, r, n, i, size)
	default:
		httpError(w, http.StatusNotFound, "want /page/N or /page/N/obj/I")
	}
}

// objectSize reads ?size= from the raw query; it returns the size and its text ("" when the
// default applies).
func (h *handler) objectSize(rawQuery string) (int64, string, error) {
	for q := rawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if v, ok := strings.CutPrefix(kv, "size="); ok {
			n, err := parseSize(v, int64(h.cfg.MaxPageObjectSize))
			return n, v, err
		}
	}
	return int64(h.cfg.PageObjectSize), "", nil
}

// serveBasePage writes the HTML page of /page/N.
func (h *handler) serveBasePage(w http.ResponseWriter, r *http.Request, n int, size int64, sizeArg string) {
	body := h.pages.get(n, sizeArg)
	hd := w.Header()
	hd["Content-Type"] = []string{"text/html; charset=utf-8"}
	hd["Etag"] = []string{`"p-` + strconv.Itoa(n) + "-" + strconv.FormatInt(size, 10) + `"`}
	setDefaultCacheControl(hd, h.synthCacheControl())
	http.ServeContent(w, r, "", synthEpoch, strings.NewReader(body))
}

// serveObject writes object i of page n: size deterministic bytes, distinct per object.
func (h *handler) serveObject(w http.ResponseWriter, r *http.Request, n, i int, size int64) {
	hd := w.Header()
	hd["Content-Type"] = []string{"application/octet-stream"}
	hd["Etag"] = []string{`"o-` + strconv.Itoa(n) + "-" + strconv.Itoa(i) + "-" + strconv.FormatInt(size, 10) + `"`}
	setDefaultCacheControl(hd, h.synthCacheControl())
	http.ServeContent(w, r, "", synthEpoch, newPatternReader(int64(i)*7919, size))
}

// pageCache keeps rendered /page/N bodies; it stops adding entries at pageCacheMax so hostile
// ?size= values cannot grow it without bound.
type pageCache struct {
	mu    sync.RWMutex
	pages map[string]string
}

// pageCacheMax bounds the rendered pages kept.
const pageCacheMax = 4096

// newPageCache returns an empty page cache.
func newPageCache() *pageCache { return &pageCache{pages: map[string]string{}} }

// get returns the page for n objects whose URLs carry ?size=sizeArg (none when empty).
func (c *pageCache) get(n int, sizeArg string) string {
	key := strconv.Itoa(n) + "?" + sizeArg
	c.mu.RLock()
	body, ok := c.pages[key]
	c.mu.RUnlock()
	if ok {
		return body
	}
	body = renderPage(n, sizeArg)
	c.mu.Lock()
	if len(c.pages) < pageCacheMax {
		c.pages[key] = body
	}
	c.mu.Unlock()
	return body
}

// renderPage builds the base page: a title and n <img> elements.
func renderPage(n int, sizeArg string) string {
	var b strings.Builder
	ns := strconv.Itoa(n)
	query := ""
	if sizeArg != "" {
		query = "?size=" + sizeArg
	}
	b.Grow(200 + n*(40+len(ns)+len(query)))
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Page with " + ns +
		" objects</title></head>\n<body><h1>Page with " + ns + " objects</h1>\n")
	for i := 1; i <= n; i++ {
		b.WriteString(`<img src="/page/` + ns + "/obj/" + strconv.Itoa(i) + query + `" width="8" height="8" alt="">` + "\n")
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// serveStatus answers /status/CODE with that status (200-599) and a short body.
func serveStatus(w http.ResponseWriter, r *http.Request, rest string) {
	arg, tail := splitFirst(rest)
	code, err := strconv.Atoi(arg)
	if tail != "" || err != nil || len(arg) != 3 || code < 200 || code > 599 {
		httpError(w, http.StatusBadRequest, "want /status/CODE with CODE in 200-599")
		return
	}
	hd := w.Header()
	setDefaultCacheControl(hd, "no-store")
	switch code {
	case 301, 302, 303, 307, 308:
		hd.Set("Location", "/")
	case http.StatusUnauthorized:
		hd.Set("WWW-Authenticate", `Basic realm="outpost"`)
	case http.StatusMethodNotAllowed:
		hd.Set("Allow", "GET, HEAD")
	case http.StatusRequestedRangeNotSatisfiable:
		hd.Set("Content-Range", "bytes */0")
	}
	if code == http.StatusNoContent || code == http.StatusNotModified || code == http.StatusResetContent {
		w.WriteHeader(code)
		return
	}
	body := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}

// echo is the JSON body of /headers.
type echo struct {
	Method     string              `json:"method"`
	URI        string              `json:"uri"`
	Proto      string              `json:"proto"`
	Host       string              `json:"host"`
	RemoteAddr string              `json:"remote_addr"`
	Headers    map[string][]string `json:"headers"`
}

// serveHeaders echoes the request line and header fields as JSON.
func serveHeaders(w http.ResponseWriter, r *http.Request, rest string) {
	if rest != "" && rest != "/" {
		httpError(w, http.StatusNotFound, "want /headers")
		return
	}
	body, err := json.MarshalIndent(echo{
		Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host,
		RemoteAddr: r.RemoteAddr, Headers: r.Header,
	}, "", "  ")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	body = append(body, '\n')
	hd := w.Header()
	setDefaultCacheControl(hd, "no-store")
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
