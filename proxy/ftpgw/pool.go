package ftpgw

import (
	"context"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"
)

// A browser page with many ftp:// objects would log in once per object; like a browser's HTTP
// keep-alive, the gateway instead keeps a few logged-in control connections idle and reuses
// one for the next fetch with the same server and credentials.

// poolKey identifies sessions that may serve each other's requests: the same server and the
// same login. The password is part of the key, so a request with a wrong password never
// borrows a session logged in with the right one.
type poolKey struct {
	hostport, user, pass string
}

// pool holds idle, logged-in sessions: at most max in all, each for at most idle.
type pool struct {
	mu     sync.Mutex
	idle   map[poolKey][]*session // most recently used last
	n      int
	max    int
	ttl    time.Duration
	closed bool
}

// newPool returns a pool of at most max idle sessions kept for ttl (max 0: no pooling).
func newPool(max int, ttl time.Duration) *pool {
	return &pool{idle: map[poolKey][]*session{}, max: max, ttl: ttl}
}

// get takes the most recently used idle session for key, or returns nil.
func (p *pool) get(key poolKey) *session {
	p.mu.Lock()
	var stale []*session
	defer func() {
		p.mu.Unlock()
		for _, s := range stale {
			s.close()
		}
	}()
	for {
		list := p.idle[key]
		if len(list) == 0 {
			return nil
		}
		s := list[len(list)-1]
		p.remove(key, len(list)-1)
		if s.idleTimer.Stop() {
			return s
		}
		// Its timer has just fired: expire will not find it any more, so close it here.
		stale = append(stale, s)
	}
}

// put keeps s for reuse; it reports false (the caller closes s) when the pool is full or closed.
func (p *pool) put(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.n >= p.max {
		return false
	}
	p.idle[s.key] = append(p.idle[s.key], s)
	p.n++
	s.idleTimer = time.AfterFunc(p.ttl, func() { p.expire(s) })
	return true
}

// expire closes s if it is still idle in the pool after its idle timeout.
func (p *pool) expire(s *session) {
	p.mu.Lock()
	found := false
	for i, x := range p.idle[s.key] {
		if x == s {
			p.remove(s.key, i)
			found = true
			break
		}
	}
	p.mu.Unlock()
	if found {
		s.close()
	}
}

// remove deletes entry i of key's list (p.mu held).
func (p *pool) remove(key poolKey, i int) {
	list := p.idle[key]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list
	}
	p.n--
}

// closeAll closes every idle session and refuses new ones.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*session
	for _, list := range p.idle {
		for _, s := range list {
			s.idleTimer.Stop() // if it already fired, expire will not find s: close it here
			all = append(all, s)
		}
	}
	p.idle, p.n = map[poolKey][]*session{}, 0
	p.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// idleCount is the number of idle sessions (for tests and metrics).
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// checkout returns a healthy idle session for key attached to ctx, or nil. Each candidate is
// probed with NOOP first: a server may have closed it in the meantime.
func (g *Gateway) checkout(ctx context.Context, key poolKey) *session {
	for {
		s := g.pool.get(key)
		if s == nil {
			return nil
		}
		s.attach(ctx)
		if err := s.c.NoOp(); err != nil {
			g.log.Debug("ftp gateway: pooled session is gone", "server", key.hostport, "err", err)
			s.close()
			continue
		}
		return s
	}
}

// release ends a request's use of s: back to the pool when the session is known to be in its
// initial state (login directory, binary type, no transfer in flight), else QUIT.
func (s *session) release(clean bool) {
	if !s.detach() || !clean || s.g.pool.max <= 0 {
		s.close()
		return
	}
	if s.moved {
		if err := s.c.ChangeDir(s.home); err != nil {
			s.close()
			return
		}
		s.moved = false
	}
	if s.ascii {
		if err := s.c.Type(ftp.TransferTypeBinary); err != nil {
			s.close()
			return
		}
		s.ascii = false
	}
	s.conns.keepControl()
	if !s.g.pool.put(s) {
		s.close()
	}
}
