package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// demoPage serves an HTML page with embedded objects (stylesheet, script, images).
func demoPage(t *testing.T) (*testOrigin, []string) {
	objects := []string{"/style.css", "/app.js", "/img/1.svg", "/img/2.svg", "/img/3.svg"}
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<!doctype html><html><head><link rel="stylesheet" href="/style.css"><script src="/app.js"></script></head><body><h1>Outpost demo</h1>`)
			for _, img := range objects[2:] {
				fmt.Fprintf(w, `<img src="%s" width="10" height="10">`, img)
			}
			fmt.Fprint(w, `</body></html>`)
		case r.URL.Path == "/style.css":
			w.Header().Set("Content-Type", "text/css")
			fmt.Fprint(w, "h1 { color: #333 }")
		case r.URL.Path == "/app.js":
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.title = "loaded";`)
		case strings.HasPrefix(r.URL.Path, "/img/"):
			w.Header().Set("Content-Type", "image/svg+xml")
			fmt.Fprint(w, `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`)
		default:
			http.NotFound(w, r)
		}
	})
	return o, objects
}

// TestChromium loads a page with embedded objects in headless Chromium through the proxy,
// first with --proxy-server, then with --proxy-pac-url pointing at the proxy's own PAC file,
// and checks that every object arrived through the proxy (the access log shows each).
func TestChromium(t *testing.T) {
	clienttest.Chromium(t)
	o, objects := demoPage(t)
	// The page is named by a non-loopback host name, which the proxy resolves to the origin:
	// browsers never send loopback URLs through a PAC-configured proxy.
	port := o.URL[strings.LastIndex(o.URL, ":")+1:]
	p := startProxy(t, "resolve = [\"demo.outpost.test=127.0.0.1\"]\n", Options{})
	page := "http://demo.outpost.test:" + port + "/"
	runs := []struct{ name, flag string }{
		{"proxy-server", "--proxy-server=http://" + p.addr},
		{"pac", "--proxy-pac-url=http://" + p.addr + "/proxy.pac"},
	}
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			before := len(p.log.lines())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := clienttest.ChromiumCommand(ctx, t, run.flag, "--proxy-bypass-list=<-loopback>",
				"--virtual-time-budget=5000", "--dump-dom", page)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("chromium: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Outpost demo") || !strings.Contains(string(out), "<title>loaded</title>") {
				t.Fatalf("page not loaded with its script:\n%s", out)
			}
			waitFor(t, "every object in the access log", func() bool {
				log := strings.Join(p.log.lines()[before:], "\n")
				for _, obj := range append([]string{"/"}, objects...) {
					if !strings.Contains(log, page[:len(page)-1]+obj+" ") {
						return false
					}
				}
				return true
			})
			if run.name == "pac" && !strings.Contains(p.log.String(), "/proxy.pac") {
				t.Error("the PAC file was not fetched from the proxy")
			}
		})
	}
}
