package proxy

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHeadBuffered: only a whole head that does not start with an empty line counts as
// buffered (reading it needs no read_header_timeout).
func TestHeadBuffered(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     bool
	}{
		{"whole head", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"whole head and more", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HT", true},
		{"partial head", "GET / HTTP/1.1\r\nHost: a\r\n", false},
		{"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n", false},
		{"leading bare LF", "\n\r\n\r\n", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &conn{br: bufio.NewReader(strings.NewReader(tc.in))}
			if tc.in != "" {
				_, _ = c.br.Peek(1)
			}
			if got := c.headBuffered(); got != tc.want {
				t.Fatalf("headBuffered(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestDeadlineSlack: a sixteenth of the timeout, at most a second.
func TestDeadlineSlack(t *testing.T) {
	for _, tc := range []struct {
		timeout, want time.Duration
	}{
		{160 * time.Millisecond, 10 * time.Millisecond},
		{16 * time.Second, time.Second},
		{120 * time.Second, time.Second},
	} {
		if got := deadlineSlack(tc.timeout); got != tc.want {
			t.Errorf("deadlineSlack(%v) = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}

// TestHeaderTimeoutAfterKeepAlive: after requests whose heads arrived whole (no header
// deadline armed for them), a head that stops arriving still gets 408 after
// read_header_timeout, also behind leading empty lines, well before idle_timeout.
func TestHeaderTimeoutAfterKeepAlive(t *testing.T) {
	for _, tc := range []struct{ name, partial string }{
		{"partial head", "GET /3 HTTP/1.1\r\nHost: a"},
		{"empty lines first", "\r\n\r\nGET /3 HTTP/1.1\r\nHo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, "read_header_timeout = \"150ms\"\nidle_timeout = \"60s\"\n[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n",
				Options{Cache: newHitCache()})
			c := dialRaw(t, p.addr)
			for range 2 {
				c.send("GET /obj HTTP/1.1\r\nHost: a\r\n\r\n")
				if resp, _ := c.response("GET"); resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			start := time.Now()
			c.send(tc.partial)
			resp, _ := c.response("GET")
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408", resp.StatusCode)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("408 after %v: the idle deadline applied, not read_header_timeout", d)
			}
		})
	}
}

// TestIdleTimeoutRearmed: a keep-alive connection used more often than idle_timeout stays
// open across several idle_timeouts in all (its idle deadline moves on), and closes once idle.
func TestIdleTimeoutRearmed(t *testing.T) {
	p := startProxy(t, "idle_timeout = \"1s\"\n[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n",
		Options{Cache: newHitCache()})
	c := dialRaw(t, p.addr)
	for i := range 4 {
		if i > 0 {
			time.Sleep(400 * time.Millisecond) // an idle gap, well inside idle_timeout
		}
		c.send("GET /obj HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if !c.closed() {
		t.Fatal("connection open after idle_timeout")
	}
}
