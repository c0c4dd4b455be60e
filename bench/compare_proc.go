package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the compare run's view of the machine: the processes it starts (each in a
// process group of its own, so it can account for and stop exactly them), their CPU time from
// /proc/PID/stat, and the CPU time the rest of the machine used from /proc/stat.

// clockTick is USER_HZ, the unit of /proc/stat and /proc/PID/stat times (100 on Linux).
const clockTick = 100

// procTimes is one process's line of /proc/PID/stat: its own CPU time (all threads) and that of
// its children it has waited for, in clock ticks.
type procTimes struct {
	comm     string
	ppid     int
	pgrp     int
	own      uint64 // utime + stime
	children uint64 // cutime + cstime
}

// parseProcStat parses a /proc/PID/stat line. The command name is in parentheses and may hold
// spaces and parentheses itself, so the fields are counted from the last ')'.
func parseProcStat(line string) (procTimes, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procTimes{}, fmt.Errorf("stat line %.40q: no command name", line)
	}
	f := strings.Fields(line[end+1:])
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("stat line %.40q: %d fields", line, len(f))
	}
	// f[0] is field 3 (state): ppid is field 4, pgrp 5, utime..cstime 14..17.
	var n [6]uint64
	for i, idx := range []int{2, 11, 12, 13, 14, 1} {
		v, err := strconv.ParseUint(f[idx], 10, 64)
		if err != nil {
			return procTimes{}, fmt.Errorf("stat field %d: %w", idx+3, err)
		}
		n[i] = v
	}
	return procTimes{comm: line[open+1 : end], ppid: int(n[5]), pgrp: int(n[0]), own: n[1] + n[2], children: n[3] + n[4]}, nil
}

// procSnapshot is every process's times at one instant, by PID.
type procSnapshot map[int]procTimes

// takeProcSnapshot reads /proc/*/stat. Processes that exit while it reads are skipped.
func takeProcSnapshot() procSnapshot {
	s := procSnapshot{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if t, err := parseProcStat(string(b)); err == nil {
			s[pid] = t
		}
	}
	return s
}

// groupTicks is the CPU time the processes of group pgrp used between two snapshots. A
// process that started in between counts whole; one that exited is lost (for the servers
// measured here, only short-lived helpers would).
func groupTicks(before, after procSnapshot, pgrp int) uint64 {
	var sum uint64
	for pid, a := range after {
		if a.pgrp != pgrp {
			continue
		}
		if b, ok := before[pid]; ok && b.own <= a.own {
			sum += a.own - b.own
		} else if !ok {
			sum += a.own
		}
	}
	return sum
}

// outsider is a process the run did not start, with the CPU it used in a window.
type outsider struct {
	Comm  string  `json:"comm"`
	Cores float64 `json:"cores"`
}

// outsiders sums the CPU time of every process outside ours between two snapshots, by
// command name, busiest first. A process that exited in the window shows in its surviving
// ancestor's reaped-children time, less what it had used by the first snapshot.
func outsiders(before, after procSnapshot, ours func(pid int, t procTimes) bool, window time.Duration) []outsider {
	// By surviving ancestor: the first-snapshot time of its descendants that exited, which its
	// reaped-children time now includes (through any descendants that exited too).
	earlier := map[int]uint64{}
	for pid, b := range before {
		if _, alive := after[pid]; alive {
			continue
		}
		up := b.ppid
		for hops := 0; hops < 64; hops++ {
			if _, alive := after[up]; alive {
				break
			}
			p, known := before[up]
			if !known {
				break
			}
			up = p.ppid
		}
		earlier[up] += b.own + b.children
	}
	by := map[string]uint64{}
	for pid, a := range after {
		if ours(pid, a) {
			continue
		}
		b := before[pid] // zero for a process that started in the window
		var own, reaped uint64
		if a.own >= b.own {
			own = a.own - b.own
		}
		if a.children >= b.children+earlier[pid] {
			reaped = a.children - b.children - earlier[pid]
		}
		if own+reaped > 0 {
			by[a.comm] += own + reaped
		}
	}
	out := make([]outsider, 0, len(by))
	for c, t := range by {
		out = append(out, outsider{Comm: c, Cores: ticksToSeconds(t) / window.Seconds()})
	}
	slices.SortFunc(out, func(a, b outsider) int {
		if a.Cores != b.Cores {
			if a.Cores > b.Cores {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Comm, b.Comm)
	})
	return out
}

func ticksToSeconds(t uint64) float64 { return float64(t) / clockTick }

// cpuStat is the machine's CPU time from the "cpu" line of /proc/stat, in clock ticks.
type cpuStat struct {
	busy  uint64 // user + nice + system: what processes ran (interrupts are not charged to them)
	steal uint64 // taken by the hypervisor for other guests
	total uint64 // every column
}

// parseCPUStat reads the aggregate "cpu" line of /proc/stat.
func parseCPUStat(b []byte) (cpuStat, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return cpuStat{}, fmt.Errorf("/proc/stat cpu column %d: %w", i+1, err)
			}
			v[i] = n
		}
		var total uint64
		for _, n := range v {
			total += n
		}
		return cpuStat{busy: v[0] + v[1] + v[2], steal: v[7], total: total}, nil
	}
	return cpuStat{}, errors.New("/proc/stat has no cpu line")
}

func readCPUStat() (cpuStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, err
	}
	return parseCPUStat(b)
}

// loadAverage returns the 1-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Disturbance says how much of the machine others used while one cell was measured.
type Disturbance struct {
	// OutsideCores is the machine's busy time (user+nice+system+steal, all CPUs) minus what the
	// run's own processes used (servers, origin, load generator, itself), in cores.
	OutsideCores float64 `json:"outside_cores"`
	// StealCores is the hypervisor's share of it.
	StealCores float64 `json:"steal_cores"`
	// Load1 is the 1-minute load average at the end of the window.
	Load1 float64 `json:"load1"`
	// Top is the busiest outside processes by command name (at most 3).
	Top []outsider `json:"top,omitempty"`
	// Disturbed is OutsideCores above the run's threshold.
	Disturbed bool `json:"disturbed"`
}

// disturbance computes a window's outside load from the machine's and the run's CPU time.
func disturbance(before, after cpuStat, oursSeconds float64, window time.Duration, threshold float64) Disturbance {
	w := window.Seconds()
	if w <= 0 {
		return Disturbance{}
	}
	busy := ticksToSeconds(after.busy-before.busy) + ticksToSeconds(after.steal-before.steal)
	d := Disturbance{
		OutsideCores: max(0, busy-oursSeconds) / w,
		StealCores:   ticksToSeconds(after.steal-before.steal) / w,
	}
	d.Disturbed = d.OutsideCores > threshold
	return d
}

// process is one started server (or the origin) with its whole process group.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // the exit, once done is closed
}

// startProcess starts cmd in a process group of its own with its output in logFile.
func startProcess(name string, cmd *exec.Cmd, logFile string) (*process, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = ownGroup()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// pgrp is the process group of the process and everything it forked.
func (p *process) pgrp() int { return p.cmd.Process.Pid }

// exited reports whether the group leader has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace for the leader and then kills
// the group. Only this group is signalled: nothing the run did not start.
func (p *process) stop(grace time.Duration) {
	pg := p.pgrp()
	syscall.Kill(-pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	// Children that outlive the leader (a worker, a cache manager child) go too; wait until
	// the group is empty (killed members leave it when they are reaped).
	syscall.Kill(-pg, syscall.SIGKILL)
	<-p.done
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-pg, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// waitListening polls addr until it accepts a connection, the process exits or the timeout
// passes.
func (p *process) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := dialOnce(addr); err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s (%v); its log:\n%s", p.name, addr, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %v; its log:\n%s", p.name, addr, timeout, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pinGroup pins every thread of every process in group pgrp to cpu, and returns how many
// threads it found running elsewhere. taskset pins what a server starts with, but a server
// may move its own threads: Traffic Server binds its ET_NET threads to the whole machine
// (proxy.config.exec_thread.affinity), which would give it two cores where the others have one.
func pinGroup(pgrp, cpu int) (moved int, err error) {
	var want unix.CPUSet
	want.Set(cpu)
	for pid, t := range takeProcSnapshot() {
		if t.pgrp != pgrp {
			continue
		}
		tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
		for _, e := range tasks {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			var have unix.CPUSet
			if unix.SchedGetaffinity(tid, &have) != nil || have == want {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &want); err != nil && !errors.Is(err, unix.ESRCH) {
				return moved, fmt.Errorf("pin thread %d of %d to CPU %d: %w", tid, pid, cpu, err)
			}
			moved++
		}
	}
	return moved, nil
}

// ownGroup puts a started process in a process group of its own (so the run can signal it and
// everything it forks, and nothing else) and has the kernel kill it should the run itself die
// without cleaning up (SIGKILL, OOM).
func ownGroup() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
