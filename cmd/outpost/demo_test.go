package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	outpost "github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// loopbackHostPort matches every loopback host:port in the example configuration: listeners,
// origin URLs, health-check targets and the mail resolver alike.
var loopbackHostPort = regexp.MustCompile(`(127\.0\.0\.\d+):(\d+)`)

// demoConfig is the example configuration moved to free ports as a whole: every occurrence
// of one host:port becomes the same new host:port, so the parts still find each other (the
// proxy's route reaches the origin, DNS health checks reach the proxy's edge addresses, the
// mail relay asks the DNS server and delivers to the second mail host). It returns the file
// and the mapping from the example's addresses to the new ones.
func demoConfig(t *testing.T) (string, map[string]string) {
	t.Helper()
	moved := map[string]string{}
	text := loopbackHostPort.ReplaceAllStringFunc(string(outpost.ExampleConfig), func(hp string) string {
		if n, ok := moved[hp]; ok {
			return n
		}
		host, _, _ := net.SplitHostPort(hp)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("no free port on %s: %v", host, err)
		}
		moved[hp] = ln.Addr().String()
		ln.Close()
		return moved[hp]
	})
	_, relayPort, _ := net.SplitHostPort(moved["127.0.0.2:2525"])
	text = regexp.MustCompile(`(?m)^relay_port = \d+`).ReplaceAllString(text, "relay_port = "+relayPort)
	text = regexp.MustCompile(`(?m)^data_dir = .*$`).ReplaceAllString(text, fmt.Sprintf("data_dir = %q", filepath.Join(t.TempDir(), "var")))
	f := filepath.Join(t.TempDir(), "demo.toml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, moved
}

// startDemoBinary starts `outpost up` on the demo configuration moved to free ports
// (demoConfig) and waits until /readyz answers 200. A port taken between demoConfig's pick and
// the binary's bind (by a test running in parallel) makes the binary exit at once: it is
// started again on new ports, at most three times; any other early exit fails the test with
// what the binary logged. The returned lines are everything it logs, from its start (the
// caller drains them).
func startDemoBinary(t *testing.T) (*exec.Cmd, map[string]string, <-chan string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		cfg, moved := demoConfig(t)
		cmd, lines := startBinary(t, nil, "up", "--config", cfg)
		var seen []string
		exited := false
		deadline := time.Now().Add(60 * time.Second)
		poll := time.NewTicker(20 * time.Millisecond)
		for !exited && !readyz(moved["127.0.0.1:9090"]) {
			select {
			case l, ok := <-lines:
				if !ok {
					exited = true
					break
				}
				seen = append(seen, l)
			case <-poll.C:
			}
			if !exited && time.Now().After(deadline) {
				poll.Stop()
				t.Fatalf("/readyz did not answer 200 within 60s; the binary logged:\n%s", strings.Join(seen, "\n"))
			}
		}
		poll.Stop()
		if !exited {
			out := make(chan string, 256)
			go func() {
				defer close(out)
				for _, l := range seen {
					out <- l
				}
				for l := range lines {
					out <- l
				}
			}()
			return cmd, moved, out
		}
		_ = cmd.Wait()
		logged := strings.Join(seen, "\n")
		if attempt < 3 && strings.Contains(logged, "address already in use") {
			t.Logf("a port was taken before the binary bound it; again on new ports:\n%s", logged)
			continue
		}
		t.Fatalf("outpost up exited before it was ready:\n%s", logged)
	}
}

// readyz reports whether the admin listener at addr answers /readyz with 200.
func readyz(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// output runs a client under a deadline and returns its standard output, failing the test on
// error.
func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	return string(clienttest.Run(t, 30*time.Second, name, args...))
}

// TestDemoWithRealClients runs the real binary on the demo configuration and walks the
// README's recipes with the real clients: curl through the proxy (miss, then hit), reverse
// mode, dig for the three steering regions, ftp:// through the proxy, and mail relayed from
// outpost.test to remote.test through the queue, an MX lookup in Outpost's own DNS and the
// second mail host, read back with curl over POP3.
func TestDemoWithRealClients(t *testing.T) {
	clienttest.Need(t, "curl", "curl")
	clienttest.Need(t, "dig", "dnsutils")
	cmd, moved, lines := startDemoBinary(t)
	go func() {
		for range lines {
		}
	}()
	defer cmd.Process.Signal(os.Interrupt)

	proxy, origin := moved["127.0.0.1:8080"], moved["127.0.0.1:8081"]
	t.Run("proxy miss then hit", func(t *testing.T) {
		url := "http://" + origin + "/bytes/1k"
		first := output(t, "curl", "-s", "-D", "-", "-o", "/dev/null", "-x", "http://"+proxy, url)
		second := output(t, "curl", "-s", "-D", "-", "-o", "/dev/null", "-x", "http://"+proxy, url)
		if !strings.Contains(first, "fwd=") || !strings.Contains(second, "Cache-Status: outpost; hit") {
			t.Errorf("want a miss then a hit:\n%s\n%s", first, second)
		}
	})
	t.Run("reverse proxy", func(t *testing.T) {
		body := output(t, "curl", "-s", "-H", "Host: www.cdn.test", "http://"+proxy+"/page/3")
		if strings.Count(body, "/page/3/obj/") != 3 {
			t.Errorf("reverse route did not serve the origin's /page/3:\n%s", body)
		}
	})
	t.Run("dns steering", func(t *testing.T) {
		dnsHost, dnsPort, _ := net.SplitHostPort(moved["127.0.0.1:5353"])
		for subnet, want := range map[string]string{
			"192.0.2.1/24": "127.0.0.11", "198.51.100.7/24": "127.0.0.12", "203.0.113.7/24": "127.0.0.13",
		} {
			got := strings.TrimSpace(output(t, "dig", "@"+dnsHost, "-p", dnsPort, "www.cdn.test", "A", "+short", "+subnet="+subnet))
			if got != want {
				t.Errorf("client %s: dig answered %q, want %s", subnet, got, want)
			}
		}
	})
	t.Run("ftp through the proxy", func(t *testing.T) {
		listing := output(t, "curl", "-s", "-x", "http://"+proxy, "ftp://"+moved["127.0.0.1:2121"]+"/pub/")
		if !strings.Contains(listing, "README.txt") || !strings.Contains(listing, "<a ") {
			t.Errorf("no HTML listing of pub/:\n%s", listing)
		}
	})
	t.Run("mail relayed through DNS MX", func(t *testing.T) {
		smtpAddr := moved["127.0.0.1:2525"]
		msg := filepath.Join(t.TempDir(), "msg.txt")
		os.WriteFile(msg, []byte("From: alice@outpost.test\r\nTo: carol@remote.test\r\nSubject: relay demo\r\n\r\nacross the suite\r\n"), 0o600)
		output(t, "curl", "-s", "--url", "smtp://"+smtpAddr, "--user", "alice:wonderland",
			"--mail-from", "alice@outpost.test", "--mail-rcpt", "carol@remote.test", "--upload-file", msg)
		pop := "pop3://" + moved["127.0.0.1:1110"] + "/"
		deadline := time.Now().Add(30 * time.Second)
		for {
			list := output(t, "curl", "-s", "--user", "carol:pirates", pop)
			for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
				n, _, _ := strings.Cut(l, " ")
				if strings.Contains(output(t, "curl", "-s", "--user", "carol:pirates", pop+n), "across the suite") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the relayed message never reached carol; her mailbox:\n%s", list)
			}
			time.Sleep(100 * time.Millisecond) // waiting on the queue runner, an external effect
		}
	})
}
