package bench

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sync/atomic"
	"time"
)

// pageClient fetches pages and their objects over raw connections to one address (a delay line
// in front of the origin or the proxy), the way a browser of each strategy would.
type pageClient struct {
	addr         string        // where to connect
	proxy        bool          // send absolute-form requests (forward proxy)
	host         string        // the origin's host:port, as named in request URLs
	bytes        atomic.Int64  // response bytes received, for the bandwidth model
	hits, misses atomic.Int64  // Cache-Status outcomes of the measured fetches
	rtt          time.Duration // the client leg's RTT, which a new connection's handshake costs
	// dialer opens connections (nil: net.DialTimeout); the lab dials inside a namespace.
	dialer func(addr string) (net.Conn, error)
	// onResponse, when set, sees every response read (the lab counts tiers' hits).
	onResponse func(path string, resp *response)
	// tls is the multiplexed strategy's client configuration (TLS 1.3, ALPN h2); streamLimit
	// the server's SETTINGS_MAX_CONCURRENT_STREAMS as last seen (0: unknown).
	tls         *tls.Config
	streamLimit atomic.Int64
}

// resetCounters zeroes the byte and Cache-Status counts.
func (c *pageClient) resetCounters() {
	c.bytes.Store(0)
	c.hits.Store(0)
	c.misses.Store(0)
}

// dial opens a connection to the client's address.
func (c *pageClient) dial() (net.Conn, error) {
	dial := c.dialer
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 10*time.Second) }
	}
	conn, err := dial(c.addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.addr, err)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	return conn, nil
}

// request returns the bytes of a GET for path (origin-form path with query).
func (c *pageClient) request(path string, o requestOptions) []byte {
	t := target{addr: c.addr, host: c.host, path: path}
	if c.proxy {
		t.path = "http://" + c.host + path
	}
	return buildRequest(t, o)
}

// fetchNew fetches path on a new, non-persistent HTTP/1.0 connection.
func (c *pageClient) fetchNew(path string) (*response, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Write(c.request(path, requestOptions{http10: true})); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return c.readOne(newRespReader(conn, true), path)
}

// readOne reads one response and checks its status.
func (c *pageClient) readOne(r *respReader, path string) (*response, error) {
	resp := &response{}
	if err := r.read(false, resp); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	c.bytes.Add(resp.wireSize)
	if c.onResponse != nil {
		c.onResponse(path, resp)
	}
	switch resp.cache {
	case cacheHit:
		c.hits.Add(1)
	case cacheMiss:
		c.misses.Add(1)
	}
	if resp.status != 200 {
		return nil, fmt.Errorf("GET %s: status %d", path, resp.status)
	}
	return resp, nil
}

// persistentConn is one keep-alive connection that can also pipeline.
type persistentConn struct {
	c    *pageClient
	conn net.Conn
	r    *respReader
}

func (c *pageClient) openPersistent() (*persistentConn, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	return &persistentConn{c: c, conn: conn, r: newRespReader(conn, true)}, nil
}

// pipeline writes every request at once, then reads the responses in order.
func (p *persistentConn) pipeline(paths ...string) ([]*response, error) {
	var buf []byte
	for _, path := range paths {
		buf = append(buf, p.c.request(path, requestOptions{keepAlive: true})...)
	}
	if _, err := p.conn.Write(buf); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	out := make([]*response, 0, len(paths))
	for _, path := range paths {
		resp, err := p.c.readOne(p.r, path)
		if err != nil {
			return nil, err
		}
		out = append(out, resp)
	}
	return out, nil
}

func (p *persistentConn) close() { p.conn.Close() }

// srcAttr finds the embedded objects of a page: src attributes (img, script, iframe …) and
// stylesheet links.
var srcAttr = regexp.MustCompile(`(?i)<(?:[a-z]+[^>]*?\s(?:src)|link[^>]*?\shref)\s*=\s*["']([^"']+)["']`)

// embeddedObjects returns the origin-form paths of the objects a page embeds, resolved against
// the page's path; a query suffix (for example a cache-busting nonce) is appended to each.
func embeddedObjects(page []byte, base, suffix string) ([]string, error) {
	bu, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range srcAttr.FindAllSubmatch(page, -1) {
		u, err := bu.Parse(string(m[1]))
		if err != nil {
			continue
		}
		out = append(out, withQuery(u.RequestURI(), suffix))
	}
	return out, nil
}

// withQuery appends a query parameter list to a path.
func withQuery(path, q string) string {
	if q == "" {
		return path
	}
	u, err := url.Parse(path)
	if err != nil || u.RawQuery == "" {
		return path + "?" + q
	}
	return path + "&" + q
}
