//go:build linux

package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces (`ip netns list` reads it).
const netnsDir = "/run/netns"

// labNet owns the namespaces and veth links of one lab run. Everything it makes is named with
// the run's unique prefix, so concurrent runs and other tests never collide, and its teardown
// removes only what it made.
type labNet struct {
	id       string // random per run, e.g. "3f9a1c"
	nsPrefix string // "olab-3f9a1c-": namespace names
	ifPrefix string // "ol3f9a1c": interface names (at most 15 bytes in all)

	mu     sync.Mutex
	ns     []string          // namespaces made, in order
	inodes map[string]uint64 // namespace → nsfs inode, to find processes inside it
	fds    map[string]*os.File
	veths  []vethEnd // one end of each veth pair made (deleting it removes the pair)
	home   *os.File  // the network namespace the lab started in
	lock   *os.File  // <labLockDir>/<id>.lock, flocked while the run lives
}

// labLockDir holds one lock file per live run: a run whose lock is free has died, and
// CleanStaleLabs may remove what it left.
const labLockDir = "/run/outpost-lab"

// lockRun creates and flocks the lock file of run id; it fails when another process holds it.
func lockRun(id string) (*os.File, error) {
	if err := os.MkdirAll(labLockDir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(labLockDir, id+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: run %s is alive: %w", id, err)
	}
	return f, nil
}

// vethEnd names one end of a veth pair.
type vethEnd struct{ ns, dev string }

// checkLabSupport reports why the lab cannot run here: not root, no iproute2, or no network
// namespaces. Its errors are usage errors (exit status 2).
func checkLabSupport() error {
	if os.Geteuid() != 0 {
		return usagef("outpost lab needs root (network namespaces and veth links): run it with sudo")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return usagef("outpost lab needs iproute2's ip command (Debian package iproute2): %v", err)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return usagef("outpost lab needs network namespaces (CONFIG_NET_NS): %v", err)
	}
	return nil
}

// newLabNet picks a prefix no namespace uses yet and opens the lab's home namespace.
func newLabNet() (*labNet, error) {
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("lab: open own network namespace: %w", err)
	}
	for range 10 {
		b := make([]byte, 3)
		rand.Read(b)
		id := hex.EncodeToString(b)
		n := &labNet{id: id, nsPrefix: "olab-" + id + "-", ifPrefix: "ol" + id,
			inodes: map[string]uint64{}, fds: map[string]*os.File{}, home: home}
		if _, err := os.Stat(filepath.Join(labLockDir, id+".lock")); err == nil || len(n.listNS()) > 0 {
			continue
		}
		if n.lock, err = lockRun(id); err != nil {
			home.Close()
			return nil, err
		}
		return n, nil
	}
	home.Close()
	return nil, errors.New("lab: no free namespace prefix")
}

// ip runs one iproute2 command.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// nsName is the full name of the lab's namespace for a node.
func (n *labNet) nsName(node string) string { return n.nsPrefix + node }

// addNS creates a namespace with its loopback up. A failure to create the first one means the
// machine has no usable namespaces: a usage error.
func (n *labNet) addNS(node string) error {
	name := n.nsName(node)
	if err := ip("netns", "add", name); err != nil {
		n.mu.Lock()
		first := len(n.ns) == 0
		n.mu.Unlock()
		if first {
			return &UsageError{Err: fmt.Errorf("network namespaces are unavailable here: %w", err)}
		}
		return err
	}
	n.mu.Lock()
	n.ns = append(n.ns, name)
	n.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, name), &st); err != nil {
		return fmt.Errorf("lab: stat namespace %s: %w", name, err)
	}
	f, err := os.Open(filepath.Join(netnsDir, name))
	if err != nil {
		return fmt.Errorf("lab: open namespace %s: %w", name, err)
	}
	n.mu.Lock()
	n.inodes[name], n.fds[name] = st.Ino, f
	n.mu.Unlock()
	if err := ip("-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	if first := n.count() == 1; first {
		// `ip netns exec` also needs a mount namespace and a fresh /sys: check once.
		if out, err := exec.Command("ip", "netns", "exec", name, "true").CombinedOutput(); err != nil {
			return &UsageError{Err: fmt.Errorf("running processes in a network namespace is unavailable here: %v: %s", err, bytes.TrimSpace(out))}
		}
	}
	return nil
}

// count is the number of namespaces made so far.
func (n *labNet) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.ns)
}

// addVeth joins two nodes' namespaces with a veth pair made directly inside them (it never
// appears in the host's namespace), gives each end its address and brings both up.
func (n *labNet) addVeth(l *labLink) error {
	a, b := n.nsName(l.a.name), n.nsName(l.b.name)
	devA, devB := n.ifPrefix+"-"+strconv.Itoa(l.idx)+"a", n.ifPrefix+"-"+strconv.Itoa(l.idx)+"b"
	if err := ip("link", "add", devA, "netns", a, "type", "veth", "peer", "name", devB, "netns", b); err != nil {
		n.mu.Lock()
		first := len(n.veths) == 0
		n.mu.Unlock()
		if first {
			return &UsageError{Err: fmt.Errorf("veth links are unavailable here: %w", err)}
		}
		return err
	}
	n.mu.Lock()
	n.veths = append(n.veths, vethEnd{a, devA})
	n.mu.Unlock()
	for _, c := range [][]string{
		{"-n", a, "addr", "add", l.aAddr.String() + "/24", "dev", devA},
		{"-n", b, "addr", "add", l.bAddr.String() + "/24", "dev", devB},
		{"-n", a, "link", "set", devA, "up"},
		{"-n", b, "link", "set", devB, "up"},
	} {
		if err := ip(c...); err != nil {
			return err
		}
	}
	return nil
}

// addLocal puts a /32 on a namespace's loopback: a service address served (or relayed) there.
func (n *labNet) addLocal(node, addr string) error {
	return ip("-n", n.nsName(node), "addr", "add", addr+"/32", "dev", "lo")
}

// addRoute routes a /32 in a node's namespace via a next hop on one of its links.
func (n *labNet) addRoute(node, dst, via string) error {
	return ip("-n", n.nsName(node), "route", "add", dst+"/32", "via", via)
}

// inNS runs f on an OS thread switched into node's namespace: sockets f creates belong to that
// namespace for their whole life, whichever thread uses them later.
func (n *labNet) inNS(node string, f func() error) error {
	n.mu.Lock()
	fd := n.fds[n.nsName(node)]
	n.mu.Unlock()
	if fd == nil {
		return fmt.Errorf("lab: no namespace for %s", node)
	}
	runtime.LockOSThread()
	if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter namespace of %s: %w", node, err)
	}
	ferr := f()
	if err := unix.Setns(int(n.home.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and is discarded when this goroutine ends.
		return fmt.Errorf("lab: leave namespace of %s: %w", node, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialer returns a TCP dial function for node's namespace.
func (n *labNet) dialer(node string) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		var c net.Conn
		err := n.inNS(node, func() (err error) {
			c, err = net.DialTimeout("tcp", addr, 5*time.Second)
			return err
		})
		return c, err
	}
}

// listen opens a TCP listener in node's namespace.
func (n *labNet) listen(node, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.inNS(node, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// dialUDP opens a connected UDP socket in node's namespace.
func (n *labNet) dialUDP(node, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.inNS(node, func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	})
	return c, err
}

// command returns a command that runs inside node's namespace, in its own process group (a
// terminal's Ctrl-C reaches the lab, which stops it in order) and killed if the lab dies.
func (n *labNet) command(node string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.nsName(node)}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// teardown kills every process left in the lab's namespaces, deletes its veth pairs and its
// namespaces, and closes its handles. It only touches names with the run's prefix.
func (n *labNet) teardown() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, pid := range n.pidsInside() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := len(n.veths) - 1; i >= 0; i-- {
		v := n.veths[i]
		if err := ip("-n", v.ns, "link", "del", v.dev); err != nil && n.exists(v.ns) {
			errs = append(errs, err)
		}
	}
	n.veths = nil
	for _, f := range n.fds {
		f.Close()
	}
	n.fds = map[string]*os.File{}
	for i := len(n.ns) - 1; i >= 0; i-- {
		if err := ip("netns", "delete", n.ns[i]); err != nil && n.exists(n.ns[i]) {
			errs = append(errs, err)
		}
	}
	n.ns = nil
	return errors.Join(errs...)
}

// exists reports whether a namespace of the lab is still named.
func (n *labNet) exists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// listNS lists the named namespaces with the run's prefix.
func (n *labNet) listNS() []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), n.nsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// pidsInside lists processes whose network namespace is one the lab made (n.mu held).
func (n *labNet) pidsInside() []int {
	want := map[string]bool{}
	for _, ino := range n.inodes {
		want["net:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && want[l] {
			out = append(out, pid)
		}
	}
	return out
}

// leftover counts what remains of the run: named namespaces, links with its prefix in the
// host's namespace or a remaining lab namespace, and live processes inside its namespaces.
func (n *labNet) leftover() LabLeftover {
	n.mu.Lock()
	defer n.mu.Unlock()
	var l LabLeftover
	names := n.listNS()
	l.Namespaces = len(names)
	l.Links = countLinks(n.ifPrefix, nil)
	for _, ns := range names {
		l.Links += countLinks(n.ifPrefix, []string{"-n", ns})
	}
	for _, pid := range n.pidsInside() {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !isZombie(b) {
			l.Processes++
		}
	}
	return l
}

// countLinks counts interfaces named with prefix, in the host's namespace (opts nil) or ip -n NS.
func countLinks(prefix string, opts []string) int {
	out, err := exec.Command("ip", append(opts, "-o", "link", "show")...).Output()
	if err != nil {
		return 0
	}
	c := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], prefix) {
			c++
		}
	}
	return c
}

// isZombie reads the state field of /proc/PID/stat.
func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// close releases the lab's own namespace handle and its run lock.
func (n *labNet) close() {
	n.home.Close()
	if n.lock != nil {
		os.Remove(n.lock.Name())
		n.lock.Close()
	}
}

// CleanStaleLabs removes what runs that died without cleaning up (a SIGKILLed lab) left:
// the namespaces of every run whose lock is free, and any process still inside them. Live
// runs, which hold their lock, are never touched. It returns the prefixes it removed.
func CleanStaleLabs() ([]string, error) {
	if err := checkLabSupport(); err != nil {
		return nil, err
	}
	ents, _ := os.ReadDir(netnsDir)
	ids := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if id, _, ok := strings.Cut(strings.TrimPrefix(name, "olab-"), "-"); ok && strings.HasPrefix(name, "olab-") && len(id) == 6 {
			ids[id] = true
		}
	}
	var removed []string
	var errs []error
	for id := range ids {
		lock, err := lockRun(id)
		if err != nil {
			continue // alive
		}
		n := &labNet{id: id, nsPrefix: "olab-" + id + "-", ifPrefix: "ol" + id, inodes: map[string]uint64{}, fds: map[string]*os.File{}}
		for _, name := range n.listNS() {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join(netnsDir, name), &st) == nil {
				n.inodes[name] = st.Ino
			}
			n.ns = append(n.ns, name)
		}
		if err := n.teardown(); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, n.nsPrefix)
		}
		os.Remove(lock.Name())
		lock.Close()
	}
	return removed, errors.Join(errs...)
}
