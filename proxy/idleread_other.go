//go:build !unix

package proxy

// init binds the source to c's connection; without raw socket reads the connection keeps its
// buffers while it idles.
func (s *connSource) init(c *conn) { s.nc, s.c = c.nc, c }

// nothingPending cannot tell here: the connection lingers before it closes.
func (s *connSource) nothingPending() bool { return false }
