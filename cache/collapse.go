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

	mu       sync.Mutex
	cond     sync.Cond
	buf      []byte      // body bytes [base, n) held in memory
	base     int64       // body offset of buf[0]
	spill    *diskWriter // body bytes [0, spillEnd) (disk mode)
	spillEnd int64
	n        int64 // body bytes so far
	expect   int64 // declared length, -1 when unknown
	done     bool
	bodyErr  error
	refs     atomic.Int32 // pump + open readers; the spill file closes at zero
	readers  map[*flightReader]struct{}
	// overflow: the body outgrew every storage limit. It is not stored, no new reader joins,
	// and buf is only a window behind the slowest reader; the pump waits when it is full.
	overflow bool

	followers atomic.Int32 // requests waiting on or served by this flight
	group     *flightGroup // where the flight is registered (nil: nowhere)
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

// windowMax bounds the memory an overflowing flight holds ahead of its slowest reader.
const windowMax = 1 << 20

// write appends body bytes (pump only).
func (fl *flight) write(p []byte) error {
	if fl.spill != nil && !fl.overflow {
		if n, err := fl.spill.Write(p); err != nil {
			fl.spillFailed(p, n) // a full disk: the clients still get their bodies
			return nil
		}
		fl.mu.Lock()
		fl.spillEnd += int64(len(p))
	} else {
		fl.mu.Lock()
		if fl.overflow {
			// Wait for room behind the slowest reader, and for the leader's reader when it
			// holds its reference but has not opened it yet (nothing may be trimmed before).
			for len(fl.readers) > 0 && fl.n-fl.minOffset() > windowMax || len(fl.readers) == 0 && fl.refs.Load() > 1 {
				fl.cond.Wait()
			}
			if len(fl.readers) == 0 {
				fl.mu.Unlock()
				return errAbandoned
			}
			fl.trim()
		}
		fl.buf = append(fl.buf, p...)
	}
	fl.n += int64(len(p))
	fl.cond.Broadcast()
	fl.mu.Unlock()
	return nil
}

// spillFailed turns a flight whose disk file could not take p (only its first n bytes were
// written: the disk filled, say) into an overflowing one: the readers read [0, spillEnd) from
// the file and the rest from the memory window, the response is not stored, and no new
// request joins (it could not start from byte 0). Pump only.
func (fl *flight) spillFailed(p []byte, n int) {
	fl.mu.Lock()
	fl.spillEnd += int64(n)
	fl.n += int64(n)
	fl.overflow = true
	fl.buf, fl.base = append([]byte(nil), p[n:]...), fl.n
	fl.n += int64(len(p) - n)
	fl.cond.Broadcast()
	fl.mu.Unlock()
	if fl.group != nil {
		fl.group.leave(fl)
	}
}

// minOffset is the slowest reader's offset (n when there is none); fl.mu held.
func (fl *flight) minOffset() int64 {
	m := fl.n
	for r := range fl.readers {
		m = min(m, r.off)
	}
	return m
}

// trim drops the window's bytes every reader has passed; fl.mu held.
func (fl *flight) trim() {
	newBase := max(fl.minOffset(), fl.base)
	if newBase == fl.base {
		return
	}
	fl.buf = fl.buf[newBase-fl.base:]
	fl.base = newBase
	if cap(fl.buf) > 4*len(fl.buf)+windowMax {
		fl.buf = append([]byte(nil), fl.buf...)
	}
}

// overflowNow switches to overflow mode (pump only).
func (fl *flight) overflowNow() {
	fl.mu.Lock()
	fl.overflow = true
	if fl.spill != nil {
		fl.buf, fl.base = nil, fl.n
	}
	fl.mu.Unlock()
}

// spillTo moves the body so far into w, which takes over (pump only).
func (fl *flight) spillTo(w *diskWriter) error {
	if _, err := w.Write(fl.buf); err != nil {
		return err
	}
	fl.mu.Lock()
	fl.spill, fl.buf, fl.spillEnd = w, nil, fl.n
	fl.mu.Unlock()
	return nil
}

// wait blocks until the body is complete and returns its error.
func (fl *flight) wait() error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for !fl.done {
		fl.cond.Wait()
	}
	return fl.bodyErr
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
	r := &flightReader{fl: fl}
	fl.mu.Lock()
	if fl.readers == nil {
		fl.readers = map[*flightReader]struct{}{}
	}
	fl.readers[r] = struct{}{}
	fl.cond.Broadcast() // a pump waiting for its first reader
	fl.mu.Unlock()
	return r
}

// release drops one reference; the last one closes the spill file.
func (fl *flight) release() {
	left := fl.refs.Add(-1)
	fl.mu.Lock()
	fl.cond.Broadcast() // a pump waiting for a reader that will not come
	sp := fl.spill
	fl.mu.Unlock()
	if left != 0 {
		return
	}
	if sp != nil {
		_ = sp.f.Close()
	}
}

// flightReader streams a flight's body, waiting for the pump when it is ahead.
type flightReader struct {
	fl     *flight
	off    int64 // guarded by fl.mu
	closed bool
}

// Read implements io.Reader.
func (r *flightReader) Read(p []byte) (int, error) {
	fl := r.fl
	fl.mu.Lock()
	// The last bytes of a body of known length held in memory wait until it is stored, so that
	// a client that has its whole response finds it stored on its next request. (A body going
	// to disk does not wait for the fsync: a request arriving meanwhile joins the flight.)
	for !fl.done && (r.off >= fl.n || fl.n == fl.expect && fl.spill == nil && !fl.overflow) {
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
	if fl.spill != nil && r.off < fl.spillEnd {
		sp, avail := fl.spill, fl.spillEnd-r.off
		off := r.off
		fl.mu.Unlock()
		n, err := sp.ReadAt(p[:min(int64(len(p)), avail)], off)
		if err == io.EOF && n > 0 {
			err = nil
		}
		fl.mu.Lock()
		r.off += int64(n)
		fl.cond.Broadcast()
		fl.mu.Unlock()
		return n, err
	}
	n := copy(p, fl.buf[r.off-fl.base:fl.n-fl.base])
	r.off += int64(n)
	if fl.overflow {
		fl.cond.Broadcast() // the pump may be waiting for room
	}
	fl.mu.Unlock()
	return n, nil
}

// Close releases the reader's reference.
func (r *flightReader) Close() error {
	if !r.closed {
		r.closed = true
		r.fl.mu.Lock()
		delete(r.fl.readers, r)
		r.fl.cond.Broadcast()
		r.fl.mu.Unlock()
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
	fl.group = g
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

// WriteStored discards a stored response.
func (discard) WriteStored(_, _, _ []byte) error { return nil }

// WriteResponse drains and discards a response.
func (discard) WriteResponse(resp *http.Response) error {
	_, err := io.Copy(io.Discard, resp.Body)
	return err
}
