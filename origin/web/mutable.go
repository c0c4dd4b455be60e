package web

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// mutableStore holds the /mutable/NAME resources in memory: PUT replaces a body and advances
// its Last-Modified, DELETE forgets it, GET of an unknown name serves its initial version.
type mutableStore struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	epoch   string // distinguishes this process's ETags from a previous run's
	version uint64 // bumped on every PUT, so ETags are never reused
	items   map[string]*mutableItem
}

// mutableItem is one stored version; it is replaced, never edited.
type mutableItem struct {
	body    []byte
	modTime time.Time
	etag    string
}

// newMutableStore returns an empty store allowing max names.
func newMutableStore(max int, now func() time.Time) *mutableStore {
	return &mutableStore{
		max: max, now: now, items: map[string]*mutableItem{},
		epoch: strconv.FormatInt(now().UnixNano(), 36),
	}
}

// errStoreFull is returned by put when max names exist.
var errStoreFull = errors.New("too many mutable names")

// get returns the current version of name (the initial one if it was never PUT).
func (s *mutableStore) get(name string) *mutableItem {
	s.mu.Lock()
	it := s.items[name]
	s.mu.Unlock()
	if it != nil {
		return it
	}
	return &mutableItem{body: []byte(name + " version 0\n"), modTime: synthEpoch, etag: `"m0-` + name + `"`}
}

// put stores body as the new version of name and reports whether the name was new. The new
// Last-Modified is at least one second after the previous one, so If-Modified-Since sees it.
func (s *mutableStore) put(name string, body []byte) (created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.items[name]
	if prev == nil && len(s.items) >= s.max {
		return false, errStoreFull
	}
	mod := s.now().UTC().Truncate(time.Second)
	last := synthEpoch
	if prev != nil {
		last = prev.modTime
	}
	if !mod.After(last) {
		mod = last.Add(time.Second)
	}
	s.version++
	etag := `"m-` + s.epoch + "-" + strconv.FormatUint(s.version, 36) + `"`
	s.items[name] = &mutableItem{body: body, modTime: mod, etag: etag}
	return prev == nil, nil
}

// remove forgets name and reports whether it existed.
func (s *mutableStore) remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[name]
	delete(s.items, name)
	return ok
}

// validMutableName accepts 1-64 characters of [A-Za-z0-9._-].
func validMutableName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return name != "." && name != ".."
}

// serveMutable answers GET/HEAD/PUT/DELETE on /mutable/NAME.
func (h *handler) serveMutable(w http.ResponseWriter, r *http.Request, rest string) {
	name, tail := splitFirst(rest)
	if tail != "" || !validMutableName(name) {
		httpError(w, http.StatusNotFound, "want /mutable/NAME with NAME of 1-64 [A-Za-z0-9._-]")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		it := h.mutable.get(name)
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain; charset=utf-8"}
		hd["Etag"] = []string{it.etag}
		setDefaultCacheControl(hd, "no-cache")
		http.ServeContent(w, r, "", it.modTime, bytes.NewReader(it.body))
	case http.MethodPut:
		h.putMutable(w, r, name)
	case http.MethodDelete:
		if !h.mutable.remove(name) {
			httpError(w, http.StatusNotFound, "no such mutable resource")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		httpError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here")
	}
}

// putMutable reads a bounded body and stores it: 201 for a new name, 204 for a replacement.
func (h *handler) putMutable(w http.ResponseWriter, r *http.Request, name string) {
	limit := int64(h.cfg.MaxMutableSize)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if int64(len(body)) > limit {
		httpError(w, http.StatusRequestEntityTooLarge, "body exceeds web.max_mutable_size")
		return
	}
	created, err := h.mutable.put(name, body)
	if err != nil {
		httpError(w, http.StatusInsufficientStorage, err.Error())
		return
	}
	it := h.mutable.get(name)
	hd := w.Header()
	hd.Del("Expires")
	hd.Set("Cache-Control", "no-store")
	hd.Set("ETag", it.etag)
	hd.Set("Last-Modified", it.modTime.Format(http.TimeFormat))
	if created {
		hd.Set("Location", r.URL.Path)
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
