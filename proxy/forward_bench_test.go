package proxy

import "testing"

// BenchmarkHitForwardKeepAlive: BenchmarkHitKeepAlive with the proxy as a forward proxy
// (absolute-form requests), 1 KiB cache hits.
func BenchmarkHitForwardKeepAlive(b *testing.B) {
	p := benchProxy(b, "", Options{Cache: newHitCache()})
	req := "GET http://bench.test/obj HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	runLoad(b, p.addr, req, 1, benchResponseLen(b, p.addr, req))
}

// BenchmarkHitForwardPipelined16: 16 pipelined forward-proxy requests per write, 1 KiB hits.
func BenchmarkHitForwardPipelined16(b *testing.B) {
	p := benchProxy(b, "", Options{Cache: newHitCache()})
	req := "GET http://bench.test/obj HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	runLoad(b, p.addr, req, 16, benchResponseLen(b, p.addr, req))
}
