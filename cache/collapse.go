package cache

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// A flight is one origin fetch that several requests may share (request collapsing): the first
// miss for a key leads it, later ones follow it. Once the response header is known the flight
// is published; its body is read by a pump goroutine into a buffer (or, past the memory
// object limit, into the disk tier's file) that every reader streams from as it grows.
type flight struct {
	h   uint64
	key string

	ready chan struct{} // closed by publish
	left  chan struct{} // closed when unregistered (the response is stored by then, if it was)
	// Set before ready is closed.
	e         *entry    // the stored form of the response (body filled in by the pump)
	shareable bool      // followers may use the response
	refreshed bool      // e is a revalidated stored response, complete with its body
	disk      *diskItem // where a refreshed e's body is when it is not in memory

	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte      // body so far (memory mode)
	spill   *diskWriter // body so far (disk mode)
	n       int64       // body bytes so far
	expect  int64       // declared length, -1 when unknown
	done    bool
	bodyErr error
	refs    atomic.Int32 // pump + open readers; the spill file closes at zero

	followers atomic.Int32 // requests waiting on or served by this flight
}

// newFlight makes an unpublished flight.
func newFlight(h uint64, key string) *flight {
	fl := &flight{h: h, key: key, ready: make(chan struct{}), left: make(chan struct{}), expect: -1}
	fl.cond.L = &fl.mu
	fl.refs.Store(1)
	return fl
}

// publish makes the flight's outcome visible to followers.
func (fl *flight) publish(e *entry, shareable, refreshed bool) {
	fl.e, fl.shareable, fl.refreshed = e, shareable, refreshed
	close(fl.ready)
}

// write appends body bytes (pump only).
func (fl *flight) write(p []byte) error {
	if fl.spill != nil {
		if _, err := fl.spill.Write(p); err != nil {
			return err
		}
		fl.mu.Lock()
	} else {
		fl.mu.Lock()
		fl.buf = append(fl.buf, p...)
	}
	fl.n += int64(len(p))
	fl.cond.Broadcast()
	fl.mu.Unlock()
	return nil
}

// spillTo moves the body so far into w, which takes over (pump only).
func (fl *flight) spillTo(w *diskWriter) error {
	if _, err := w.Write(fl.buf); err != nil {
		return err
	}
	fl.mu.Lock()
	fl.spill, fl.buf = w, nil
	fl.mu.Unlock()
	return nil
}

// finish marks the body complete (err nil) or failed.
func (fl *flight) finish(err error) {
	fl.mu.Lock()
	fl.done, fl.bodyErr = true, err
	fl.cond.Broadcast()
	fl.mu.Unlock()
}

// body returns the buffered body once complete (memory mode).
func (fl *flight) body() []byte {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.buf[:fl.n:fl.n]
}

// reader opens a reader over the body from its start.
func (fl *flight) reader() io.ReadCloser {
	fl.refs.Add(1)
	return &flightReader{fl: fl}
}

// release drops one reference; the last one closes the spill file.
func (fl *flight) release() {
	if fl.refs.Add(-1) != 0 {
		return
	}
	fl.mu.Lock()
	sp := fl.spill
	fl.mu.Unlock()
	if sp != nil {
		_ = sp.f.Close()
	}
}

// flightReader streams a flight's body, waiting for the pump when it is ahead.
type flightReader struct {
	fl     *flight
	off    int64
	closed bool
}

// Read implements io.Reader.
func (r *flightReader) Read(p []byte) (int, error) {
	fl := r.fl
	fl.mu.Lock()
	// The last bytes of a body of known length held in memory wait until it is stored, so that
	// a client that has its whole response finds it stored on its next request. (A body going
	// to disk does not wait for the fsync: a request arriving meanwhile joins the flight.)
	for !fl.done && (r.off >= fl.n || fl.n == fl.expect && fl.spill == nil) {
		fl.cond.Wait()
	}
	if r.off >= fl.n {
		err := fl.bodyErr
		fl.mu.Unlock()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	avail := fl.n - r.off
	if fl.spill == nil {
		n := copy(p, fl.buf[r.off:fl.n])
		fl.mu.Unlock()
		r.off += int64(n)
		return n, nil
	}
	sp := fl.spill
	fl.mu.Unlock()
	n, err := sp.ReadAt(p[:min(int64(len(p)), avail)], r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Close releases the reader's reference.
func (r *flightReader) Close() error {
	if !r.closed {
		r.closed = true
		r.fl.release()
	}
	return nil
}

// flightGroup holds the flights in progress by primary key.
type flightGroup struct {
	mu sync.Mutex
	m  map[uint64]*flight
}

// join returns the flight in progress for key, or registers a new one that the caller leads.
func (g *flightGroup) join(h uint64, key string) (fl *flight, leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if fl := g.m[h]; fl != nil && fl.key == key {
		return fl, false
	}
	if g.m == nil {
		g.m = map[uint64]*flight{}
	}
	fl = newFlight(h, key)
	g.m[h] = fl
	return fl, true
}

// leave unregisters a flight (new requests no longer join it).
func (g *flightGroup) leave(fl *flight) {
	g.mu.Lock()
	if g.m[fl.h] == fl {
		delete(g.m, fl.h)
		close(fl.left)
	}
	g.mu.Unlock()
}

// get returns the flight in progress for key, or nil.
func (g *flightGroup) get(h uint64, key string) *flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	if fl := g.m[h]; fl != nil && fl.key == key {
		return fl
	}
	return nil
}

// discard is a ResponseWriter that throws the response away (background revalidation).
type discard struct{}

func (discard) WriteStored(_, _, _ []byte) error { return nil }

func (discard) WriteResponse(resp *http.Response) error {
	_, err := io.Copy(io.Discard, resp.Body)
	return err
}
