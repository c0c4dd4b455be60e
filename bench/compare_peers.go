package bench

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file says how each server of the comparison is configured and started: the nginx
// origin and the five caching proxies in front of it (Outpost and the four peers), each a
// reverse proxy for that origin with its cache in memory (nginx: on disk, as it only has
// that), one worker, access log off.

//go:embed reference/outpost.toml
var outpostTemplate string

// Peers are the C proxies Outpost is compared with, in table order.
var Peers = []string{"nginx", "varnish", "squid", "ats"}

// CompareServers are every server the comparison can run: Outpost and the peers.
var CompareServers = append([]string{"outpost"}, Peers...)

// serverOrderList is the tables' row order: Outpost, its baseline, the peers, the origin.
var serverOrderList = append([]string{"outpost", "baseline"}, append(slices.Clone(Peers), "origin")...)

// serverEnv is what a server's configuration is made from.
type serverEnv struct {
	dir    string // the server's own directory under the run's work directory
	port   int    // where it listens, on 127.0.0.1
	origin int    // the origin's port on 127.0.0.1
	www    string // the origin's document root
	cpu    int    // the CPU it is pinned to
	nice   int    // its nice value (0: unchanged)
	binary string // Outpost's binary (outpost and baseline only)
	// tlsPort is the TLS listener's port (0: none), with the run's certificate.
	tlsPort int
	certs   certFiles
}

// serverSpec is one kind of server: the Debian package that provides it and how to configure
// and start it.
type serverSpec struct {
	name    string
	label   string // the table's name for it
	binary  string // the executable that must be installed
	pkgs    []string
	command func(e serverEnv) (*exec.Cmd, error) // writes its configuration, returns its command
}

var serverSpecs = map[string]serverSpec{
	"origin":   {name: "origin", label: "origin (direct)", binary: "nginx", pkgs: []string{"nginx-light", "nginx"}, command: originCommand},
	"outpost":  {name: "outpost", label: "outpost", command: outpostCommand},
	"baseline": {name: "baseline", label: "outpost (baseline)", command: outpostCommand},
	"nginx":    {name: "nginx", label: "nginx", binary: "nginx", pkgs: []string{"nginx-light", "nginx"}, command: nginxCommand},
	"varnish":  {name: "varnish", label: "varnish", binary: "varnishd", pkgs: []string{"varnish"}, command: varnishCommand},
	"squid":    {name: "squid", label: "squid", binary: "squid", pkgs: []string{"squid"}, command: squidCommand},
	"ats":      {name: "ats", label: "trafficserver", binary: "traffic_server", pkgs: []string{"trafficserver"}, command: atsCommand},
}

// pinned wraps a command line in taskset, so the server and everything it forks run on cpu,
// and in nice when nice is not 0.
func pinned(cpu, nice int, name string, args ...string) *exec.Cmd {
	args = append([]string{"-c", strconv.Itoa(cpu), name}, args...)
	if nice != 0 {
		return exec.Command("nice", append([]string{"-n", strconv.Itoa(nice), "taskset"}, args...)...)
	}
	return exec.Command("taskset", args...)
}

// originConf is the origin: nginx serving /obj.bin (1 KiB) and /obj1m.bin (1 MiB) with
// max-age=3600, the same files under /miss/ with no-store, and its request counter at
// /__status (stub_status), which tells how many requests reached it in a window.
func originConf(e serverEnv) string {
	return nginxHead(e.dir) + fmt.Sprintf(`  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    location / { add_header Cache-Control "max-age=3600"; }
    location /miss/ { alias %[3]s/; add_header Cache-Control "no-store"; }
    location = /__status { stub_status; }
  }
}
`, e.dir, e.port, e.www)
}

// nginxHead is what the origin and the nginx peer share: one worker in the foreground, its
// files in dir, access log off, sendfile, keep-alive connections that last the run.
func nginxHead(dir string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
`, dir)
}

func originCommand(e serverEnv) (*exec.Cmd, error) { return startNginx(e, originConf(e)) }

// startNginx writes an nginx configuration into the server's directory and returns nginx's
// command for it.
func startNginx(e serverEnv, conf string) (*exec.Cmd, error) {
	file := filepath.Join(e.dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return pinned(e.cpu, e.nice, "nginx", "-e", filepath.Join(e.dir, "error.log"), "-c", file, "-p", e.dir), nil
}

// outpostConf fills bench/reference/outpost.toml in.
func outpostConf(e serverEnv) string {
	return strings.NewReplacer("@PORT@", strconv.Itoa(e.port), "@ORIGIN@", strconv.Itoa(e.origin),
		"@DATA@", filepath.Join(e.dir, "data")).Replace(outpostTemplate) + outpostTLSConf(e)
}

func outpostCommand(e serverEnv) (*exec.Cmd, error) {
	conf := filepath.Join(e.dir, "outpost.toml")
	if err := os.WriteFile(conf, []byte(outpostConf(e)), 0o644); err != nil {
		return nil, err
	}
	cmd := pinned(e.cpu, e.nice, e.binary, "proxy", "--config", conf)
	cmd.Env = append(outpostFreeEnv(os.Environ()), "GOMAXPROCS=1")
	return cmd, nil
}

// outpostFreeEnv drops OUTPOST_* variables (Outpost reads them as configuration and refuses
// unknown ones), so the measured configuration is exactly the file, and GOMAXPROCS (set to 1).
// GOGC and GOMEMLIMIT pass through, for experiments.
func outpostFreeEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OUTPOST_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}

// nginxConf is nginx as a caching reverse proxy (proxy_cache on disk, as nginx has no memory
// cache; the page cache holds it), keep-alive to the origin.
func nginxConf(e serverEnv) string {
	return nginxHead(e.dir) + fmt.Sprintf(`  proxy_cache_path %[1]s/cache keys_zone=c:10m max_size=256m;
  upstream origin { server 127.0.0.1:%[3]d; keepalive 64; }
  server {
    listen 127.0.0.1:%[2]d;
%[4]s    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
    }
  }
}
`, e.dir, e.port, e.origin, nginxTLSListen(e))
}

func nginxCommand(e serverEnv) (*exec.Cmd, error) { return startNginx(e, nginxConf(e)) }

// varnishArgs is varnishd in the foreground with one thread pool and a 256 MiB malloc store,
// the built-in VCL with the origin as its backend; its management port on loopback.
func varnishArgs(e serverEnv) []string {
	return []string{"-F", "-n", filepath.Join(e.dir, "work"), "-a", "127.0.0.1:" + strconv.Itoa(e.port),
		"-T", "127.0.0.1:0", "-b", "127.0.0.1:" + strconv.Itoa(e.origin), "-s", "malloc,256m",
		"-p", "thread_pools=1"}
}

func varnishCommand(e serverEnv) (*exec.Cmd, error) {
	work := filepath.Join(e.dir, "work")
	if err := os.MkdirAll(work, 0o777); err != nil {
		return nil, err
	}
	// varnishd drops to its own users for the worker; they must reach the directory.
	if err := os.Chmod(work, 0o777); err != nil {
		return nil, err
	}
	return pinned(e.cpu, e.nice, "varnishd", varnishArgs(e)...), nil
}

// squidConf is Squid as an accelerator (reverse proxy) with a 256 MB memory cache, one
// process (-N), no disk cache.
func squidConf(e serverEnv) string {
	return fmt.Sprintf(`http_port 127.0.0.1:%[2]d accel defaultsite=127.0.0.1 no-vhost
cache_peer 127.0.0.1 parent %[3]d 0 no-query originserver name=origin
http_access allow all
cache_peer_access origin allow all
cache_mem 256 MB
maximum_object_size_in_memory 4 MB
access_log none
cache_store_log none
cache_log %[1]s/cache.log
pid_filename %[1]s/squid.pid
coredump_dir %[1]s
icp_port 0
htcp_port 0
snmp_port 0
shutdown_lifetime 0 seconds
`, e.dir, e.port, e.origin)
}

func squidCommand(e serverEnv) (*exec.Cmd, error) {
	conf := filepath.Join(e.dir, "squid.conf")
	if err := os.WriteFile(conf, []byte(squidConf(e)), 0o644); err != nil {
		return nil, err
	}
	// Squid started as root runs as its cache_effective_user (proxy), which writes here.
	if u, err := user.Lookup("proxy"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(e.dir, uid, gid)
	} else {
		os.Chmod(e.dir, 0o777)
	}
	return pinned(e.cpu, e.nice, "squid", "-N", "-f", conf), nil
}

// atsRecords are the records.config lines appended to the packaged defaults: one event
// thread, reverse proxy with remap required, 256 MiB RAM cache, logging off, loopback only.
func atsRecords(e serverEnv) string {
	return fmt.Sprintf(`CONFIG proxy.config.http.server_ports STRING %d:ipv4:ip-in=127.0.0.1
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 1
CONFIG proxy.config.accept_threads INT 0
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.cache.ram_cache.size INT 268435456
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.admin.user_id STRING #-1
`, e.port)
}

func atsCommand(e serverEnv) (*exec.Cmd, error) {
	root := filepath.Join(e.dir, "root")
	if out, err := exec.Command("traffic_layout", "init", "--path", root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("traffic_layout init: %w: %s", err, out)
	}
	etc := filepath.Join(root, "etc", "trafficserver")
	for _, d := range []string{etc, filepath.Join(root, "var", "cache"), filepath.Join(root, "run"), filepath.Join(root, "log")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return nil, err
		}
	}
	if err := copyTree(etc, "/etc/trafficserver"); err != nil {
		return nil, fmt.Errorf("copy /etc/trafficserver: %w", err)
	}
	yaml := filepath.Join(root, "runroot.yaml")
	b, err := os.ReadFile(yaml)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(yaml, []byte(atsRunroot(string(b), root)), 0o644); err != nil {
		return nil, err
	}
	rec, err := os.OpenFile(filepath.Join(etc, "records.config"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	_, err = rec.WriteString("\n" + atsRecords(e))
	if cerr := rec.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"remap.config":   fmt.Sprintf("map / http://127.0.0.1:%d/\n", e.origin),
		"storage.config": filepath.Join(root, "var", "cache") + " 256M\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	if err := chmodTree(root, 0o777); err != nil {
		return nil, err
	}
	return pinned(e.cpu, e.nice, "traffic_server", "--run-root="+yaml), nil
}

// atsRunroot points a runroot.yaml's directories into root.
func atsRunroot(yaml, root string) string {
	dirs := map[string]string{
		"sysconfdir": filepath.Join(root, "etc", "trafficserver"), "datadir": filepath.Join(root, "var", "cache"),
		"localstatedir": filepath.Join(root, "var"), "runtimedir": filepath.Join(root, "run"),
		"logdir": filepath.Join(root, "log"), "cachedir": filepath.Join(root, "var", "cache"),
	}
	lines := strings.Split(yaml, "\n")
	for i, l := range lines {
		k, _, ok := strings.Cut(l, ":")
		if d, known := dirs[strings.TrimSpace(k)]; ok && known && !strings.HasPrefix(l, " ") {
			lines[i] = k + ": " + d
		}
	}
	return strings.Join(lines, "\n")
}

// chmodTree sets mode on every directory and file under root (ATS drops privileges for some
// of its threads and writes its cache and run files there).
func chmodTree(root string, mode os.FileMode) error {
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chmod(p, mode)
	})
}

// copyTree copies the files under src into dst, replacing files that exist.
func copyTree(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o777)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// dialOnce reports whether something accepts TCP connections at addr.
func dialOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	return c.Close()
}
