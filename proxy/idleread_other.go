//go:build !unix

package proxy

// init binds the source to c's connection; without a way to read without waiting, the
// connection keeps its buffers while it idles.
func (s *connSource) init(c *conn) { s.nc = c.nc }
