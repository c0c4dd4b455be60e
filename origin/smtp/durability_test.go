package smtp

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// childEnv names the environment variables of the re-executed test binary.
const (
	childDir    = "OUTPOST_SMTP_CHILD_DIR"    // data directory; its presence makes the binary a child
	childRunner = "OUTPOST_SMTP_CHILD_RUNNER" // "off": no deliveries; "crash": SIGKILL after a mailbox delivery
)

// TestMain turns the test binary into a small mail server when re-executed by the durability
// test.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childDir); dir != "" {
		childMain(dir, os.Getenv(childRunner))
		return
	}
	os.Exit(m.Run())
}

// childMain runs host A on a free port, prints "ADDR host:port" and serves until killed.
func childMain(dir, runner string) {
	q, srv, err := childServer(dir)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	if runner == "crash" {
		testHookAfterLocalDelivery = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	if runner != "off" {
		go func() { _ = q.Serve(context.Background()) }()
	}
	fmt.Println("ADDR", srv.Addr())
	_ = srv.Serve(context.Background())
}

// TestKill9AfterAcceptDeliversExactlyOnce: the server is killed with SIGKILL right after it
// answered 250 to DATA (before delivery, during delivery, and between the mailbox delivery and
// the queue update); a restart delivers the message exactly once.
func TestKill9AfterAcceptDeliversExactlyOnce(t *testing.T) {
	for _, tc := range []struct{ name, runner string }{
		{"committed, not yet delivered", "off"},
		{"killed while the runner may be delivering", "on"},
		{"delivered, queue state not yet updated", "crash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd, addr := startChild(t, dir, tc.runner)
			if err := sendOne(addr, "alice@outpost.test", "durable "+tc.runner); err != nil {
				t.Fatalf("send: %v", err)
			}
			if tc.runner == "crash" {
				_ = cmd.Wait() // the child kills itself after the mailbox delivery
			} else {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
			}
			e := startMail(t, envConfig{dir: dir})
			e.waitQueue(t, "empty", func(l []Envelope) bool { return len(l) == 0 })
			msgs := e.waitInbox(t, "alice@outpost.test", 1)
			if !strings.Contains(string(msgs[0]), "Subject: durable "+tc.runner) {
				t.Fatalf("unexpected message:\n%s", msgs[0])
			}
		})
	}
}

// startChild re-executes the test binary as a mail server on dir and returns its address.
func startChild(t *testing.T, dir, runner string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childDir+"="+dir, childRunner+"="+runner)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		t.Fatalf("child did not start: %q %v", line, err)
	}
	return cmd, addr
}

// sendOne sends one message with go-smtp's client and returns once the 250 for DATA arrived.
func sendOne(addr, to, subject string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.Hello("durability.test")
	if err := c.Mail("bob@outpost.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: bob@outpost.test\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n\r\nbody\r\n", to, subject, time.Now().Format(time.RFC1123Z))
	return w.Close() // returns after the 250 reply
}

// childServer builds host A over dir the way startMail lays it out.
func childServer(dir string) (*Queue, *Server, error) {
	d, err := demoDirectory()
	if err != nil {
		return nil, nil, err
	}
	store, err := mailstore.Open(filepath.Join(dir, "boxes"), d)
	if err != nil {
		return nil, nil, err
	}
	q, err := NewQueue(store, QueueOptions{Dir: filepath.Join(dir, "queue"), Lifetime: time.Hour, RetryInitial: time.Minute,
		RetryMax: time.Hour, Workers: 1, LocalDomains: map[string]map[string]bool{"outpost.test": {"outpost.test": true}}})
	if err != nil {
		return nil, nil, err
	}
	srv := NewServer(HostOptions{Listen: "127.0.0.1:0", Hostname: "outpost.test", Domains: []string{"outpost.test"},
		MaxMessageSize: 1 << 20, MaxRecipients: 10, MaxLineLength: 1000, MaxAuthFailures: 3, AllowInsecureAuth: true,
		ReadTimeout: time.Minute, WriteTimeout: time.Minute}, q, nil)
	return q, srv, srv.Listen(context.Background())
}
