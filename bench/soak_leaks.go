package bench

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// suiteSnapshot is what the idle suite holds at one moment: its goroutines grouped by stack
// (the admin /debug/pprof/goroutine?debug=1 listing) and its open fds by target, sockets named
// by their TCP addresses.
type suiteSnapshot struct {
	stacks map[string]int
	fds    map[string]int
}

// snapshot reads the suite's goroutine stacks and fds (empty maps when it cannot).
func (s *soakSuite) snapshot() suiteSnapshot {
	snap := suiteSnapshot{stacks: map[string]int{}, fds: map[string]int{}}
	if resp, err := s.admin.Get("http://" + s.ports.addr(s.ports.admin) + "/debug/pprof/goroutine?debug=1"); err == nil {
		snap.stacks = parseGoroutineGroups(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
	}
	socks := tcpSockets()
	dir := "/proc/" + strconv.Itoa(s.pid()) + "/fd"
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(t, "socket:["); ok {
			if a, ok := socks[strings.TrimSuffix(ino, "]")]; ok {
				t = "tcp " + a
			}
		}
		snap.fds[t]++
	}
	return snap
}

// since lists what snap holds beyond base: goroutine groups with more members, fds with more
// entries, most first, at most 20 lines.
func (snap suiteSnapshot) since(base suiteSnapshot) []string {
	var out []string
	for k, n := range snap.stacks {
		if d := n - base.stacks[k]; d > 0 {
			out = append(out, fmt.Sprintf("+%d goroutines: %s", d, k))
		}
	}
	for k, n := range snap.fds {
		if d := n - base.fds[k]; d > 0 {
			out = append(out, fmt.Sprintf("+%d fd: %s", d, k))
		}
	}
	sort.Strings(out)
	return out[:min(len(out), 20)]
}

// parseGoroutineGroups reads a debug=1 goroutine profile: "N @ pc pc ..." headers, each
// followed by "#\t0xpc\tfunc+off\tfile:line" frames. It returns the count per stack, the stack
// named by its functions (innermost first, without offsets).
func parseGoroutineGroups(r io.Reader) map[string]int {
	out := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n, frames := 0, []string(nil)
	flush := func() {
		if n > 0 && len(frames) > 0 {
			out[strings.Join(frames, " < ")] += n
		}
		n, frames = 0, nil
	}
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.Contains(l, " @ 0x"):
			flush()
			c, _, _ := strings.Cut(l, " ")
			n, _ = strconv.Atoi(c)
		case strings.HasPrefix(l, "#\t"):
			f := strings.Fields(l)
			if len(f) >= 3 && len(frames) < 12 {
				fn, _, _ := strings.Cut(f[2], "+")
				frames = append(frames, fn)
			}
		case l == "":
			flush()
		}
	}
	flush()
	return out
}

// tcpSockets maps socket inodes to "local → remote" for the TCP sockets in /proc/net/tcp and
// tcp6.
func tcpSockets() map[string]string {
	out := map[string]string{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) < 10 {
				continue
			}
			out[fs[9]] = procAddr(fs[1]) + " → " + procAddr(fs[2]) + " state " + fs[3]
		}
	}
	return out
}

// procAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080" (IPv4; IPv6 shown raw).
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return s
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 4 {
		return s
	}
	return net.JoinHostPort(net.IPv4(b[3], b[2], b[1], b[0]).String(), strconv.Itoa(int(port)))
}
