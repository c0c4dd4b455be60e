package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestForwardAndReverseRaw(t *testing.T) {
	o := echoOrigin(t)
	p := startProxy(t, reverseRoute(o), Options{})
	c := dialRaw(t, p.addr)
	c.send("GET " + o.URL + "/fwd HTTP/1.1\r\nHost: " + o.hostport() + "\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "GET /fwd " {
		t.Fatalf("forward: %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(resp.Header.Get("Via"), "1.1 outpost") {
		t.Errorf("Via = %q", resp.Header.Get("Via"))
	}
	c.send("GET /rev HTTP/1.1\r\nHost: example.test\r\n\r\n")
	resp, body = c.response("GET")
	if resp.StatusCode != 200 || body != "GET /rev " {
		t.Fatalf("reverse: %d %q", resp.StatusCode, body)
	}
	if got := o.last().Host; got != "example.test" {
		t.Errorf("origin saw Host %q, want the client's", got)
	}
	if got := o.last().Header.Get("Via"); got != "1.1 outpost" {
		t.Errorf("origin saw Via %q", got)
	}
	waitFor(t, "two log lines", func() bool { return len(p.log.lines()) == 2 })
	for _, l := range p.log.lines() {
		if !strings.Contains(l, "TCP_MISS/200") || !strings.Contains(l, "HIER_DIRECT/"+o.hostport()) {
			t.Errorf("log line %q", l)
		}
	}
	_ = http.StatusOK
}
