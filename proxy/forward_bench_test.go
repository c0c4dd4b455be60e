package proxy

import "testing"

// anyRoute routes every Host to an origin that is never asked (the cache answers).
const anyRoute = "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n"

// benchHit runs 1 KiB stub-cache hits for target through a proxy configured with section,
// depth pipelined requests per write.
func benchHit(b *testing.B, section, target string, depth int) {
	p := benchProxy(b, section, Options{Cache: newHitCache()})
	req := "GET " + target + " HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	runLoad(b, p.addr, req, depth, benchResponseLen(b, p.addr, req))
}

// BenchmarkHitForwardKeepAlive: BenchmarkHitKeepAlive with the proxy as a forward proxy
// (absolute-form requests).
func BenchmarkHitForwardKeepAlive(b *testing.B) { benchHit(b, "", "http://bench.test/obj", 1) }

// BenchmarkHitForwardPipelined16: BenchmarkHitPipelined16 as a forward proxy.
func BenchmarkHitForwardPipelined16(b *testing.B) { benchHit(b, "", "http://bench.test/obj", 16) }
