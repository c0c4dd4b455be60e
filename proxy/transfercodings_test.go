package proxy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestTransferCodingsDecoded: an origin's gzip or deflate transfer coding before chunked is
// removed: the client gets the content (chunked on the miss, Content-Length from storage);
// content that does not decode is not stored.
func TestTransferCodingsDecoded(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(strings.Repeat("gzip content ", 100)))
	_ = zw.Close()
	ok := "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
	cases := map[string]string{
		"gzip":    ok + "Transfer-Encoding: gzip, chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", gz.Len(), gz.Bytes()) + "0\r\n\r\n",
		"corrupt": ok + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	}
	o := startFaultOrigin(t, cases)
	p := startProxy(t, "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://"+o.ln.Addr().String()+"\"]\n", Options{Cache: newRealCache(t)})
	want := strings.Repeat("gzip content ", 100)
	for round, wantTE := range []bool{true, false} {
		if round == 1 {
			// The first response is stored as its body ends, in the background of the
			// client's read: wait until the cache has it.
			waitFor(t, "/bad/gzip stored", func() bool {
				c := dialRaw(t, p.addr)
				c.send("GET /bad/gzip HTTP/1.1\r\nHost: site.test\r\nCache-Control: only-if-cached\r\n\r\n")
				resp, _ := c.response("GET")
				return resp.StatusCode == http.StatusOK
			})
		}
		c := dialRaw(t, p.addr)
		c.send("GET /bad/gzip HTTP/1.1\r\nHost: site.test\r\n\r\n")
		resp, body := c.response("GET")
		chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
		if resp.StatusCode != 200 || body != want || chunked != wantTE || (!wantTE && resp.ContentLength != int64(len(want))) {
			t.Fatalf("round %d: %d, %d bytes, TE %v, CL %d", round, resp.StatusCode, len(body), resp.TransferEncoding, resp.ContentLength)
		}
	}
	if n, _ := o.seen("/bad/gzip"); n != 1 {
		t.Fatalf("origin saw %d requests for /bad/gzip, want 1 (stored)", n)
	}
	for round := 1; round <= 2; round++ {
		c := dialRaw(t, p.addr)
		c.send("GET /bad/corrupt HTTP/1.1\r\nHost: site.test\r\n\r\n")
		if status, complete := readFinal(c.br, "GET"); status == http.StatusOK && complete {
			t.Fatalf("round %d: content that does not decode was served complete", round)
		}
		if n, _ := o.seen("/bad/corrupt"); n != round {
			t.Fatalf("round %d: origin saw %d requests: corrupt content was stored", round, n)
		}
	}
}
