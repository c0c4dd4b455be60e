package bench

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"
)

// echoServer serves TCP echo on 127.0.0.1:0 until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func newLine(t *testing.T, target string, link Link) *DelayLine {
	t.Helper()
	d, err := NewDelayLine("", target, link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// pingPong sends one byte and waits for it back, returning the elapsed time.
func pingPong(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	b := []byte{'x'}
	start := time.Now()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// within reports whether got is within frac of want.
func within(got, want time.Duration, frac float64) bool {
	return float64(got) >= float64(want)*(1-frac) && float64(got) <= float64(want)*(1+frac)
}

func TestDelayLineRTT(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"rtt 20ms", 10 * time.Millisecond},
		{"rtt 40ms", 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newLine(t, echoServer(t), Link{Delay: tc.delay})
			rtt := 2 * tc.delay
			// The first exchange on a new connection pays the handshake: 2 RTT in all.
			var firsts, rtts []time.Duration
			for range 6 {
				start := time.Now()
				c, err := net.Dial("tcp", d.Addr())
				if err != nil {
					t.Fatal(err)
				}
				pingPong(t, c)
				firsts = append(firsts, time.Since(start))
				for range 4 {
					rtts = append(rtts, pingPong(t, c))
				}
				c.Close()
			}
			if m := slices.Min(firsts); !within(m, 2*rtt, 0.10) {
				t.Errorf("connect + first exchange: min %v, want 2×RTT = %v ±10%%", m, 2*rtt)
			}
			if m := slices.Min(rtts); !within(m, rtt, 0.10) {
				t.Errorf("ping-pong: min %v, want RTT %v ±10%%", m, rtt)
			}
		})
	}
}

func TestDelayLineNoSetupCost(t *testing.T) {
	d := newLine(t, echoServer(t), Link{Delay: 10 * time.Millisecond, NoSetupCost: true})
	var firsts []time.Duration
	for range 8 {
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, pingPong(t, c))
		c.Close()
	}
	// One round trip (20 ms), not two (40 ms, the connection's setup): the line never takes
	// less than its delay, and a loaded machine adds to it, so the bound above is halfway to
	// the setup cost rather than a tight tolerance.
	if m := slices.Min(firsts); m < 19*time.Millisecond || m >= 30*time.Millisecond {
		t.Errorf("first exchange without setup cost: min %v, want one 20ms round trip (19ms..30ms; 40ms would be the setup's)", m)
	}
}

func TestDelayLineOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		link Link
	}{
		{"delay only", Link{Delay: 2 * time.Millisecond}},
		{"delay and bandwidth", Link{Delay: time.Millisecond, Bandwidth: 64 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newLine(t, echoServer(t), tc.link)
			c, err := net.Dial("tcp", d.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := make([]byte, 1<<20)
			for i := range want {
				want[i] = byte(i*7 + i>>8)
			}
			go func() {
				r := rand.New(rand.NewPCG(1, 2))
				for rest := want; len(rest) > 0; {
					n := min(len(rest), 1+r.IntN(40000))
					if _, err := c.Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
				}
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo through the line differs: got %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

// TestDelayLineChunkTiming checks that a chunk's delay does not add to later chunks: chunks
// written 6 ms apart each arrive Delay after they were written (a relay that queued them
// behind each other's delays would show lags of 1, 2, 3 … × Delay). A loaded machine can
// delay one wake-up, so the measurement is retried before the test fails.
func TestDelayLineChunkTiming(t *testing.T) {
	const delay = 20 * time.Millisecond
	var lags []time.Duration
	for attempt := 0; attempt < 3; attempt++ {
		lags = chunkLags(t, delay, 4, 6*time.Millisecond)
		ok := len(lags) == 4
		for _, l := range lags {
			ok = ok && l >= delay*9/10 && l <= delay*17/10
		}
		if ok {
			return
		}
	}
	t.Errorf("chunk lags %v, want each about %v", lags, delay)
}

// chunkLags writes n one-byte chunks spaced apart through a line of the given delay and
// returns how long after its write each arrived.
func chunkLags(t *testing.T, delay time.Duration, n int, spacing time.Duration) []time.Duration {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	arrivals := make(chan time.Time, n)
	go func() {
		defer close(arrivals)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			arrivals <- time.Now()
		}
	}()
	d := newLine(t, ln.Addr().String(), Link{Delay: delay, NoSetupCost: true})
	c, err := net.Dial("tcp", d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var sent []time.Time
	for range n {
		sent = append(sent, time.Now())
		c.Write([]byte{'x'})
		time.Sleep(spacing) // the spacing under test, not synchronisation
	}
	c.Close()
	var lags []time.Duration
	for at := range arrivals {
		if len(lags) < len(sent) {
			lags = append(lags, at.Sub(sent[len(lags)]))
		}
	}
	return lags
}

// TestDelayLineBandwidth sends 400 KiB through a 2 MiB/s line: from the first write to the
// last byte takes size/B + Delay. Load can only slow it, so the best of a few runs counts.
func TestDelayLineBandwidth(t *testing.T) {
	const bw = 2 << 20 // 2 MiB/s
	const size = 400 << 10
	const delay = 2 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := newLine(t, ln.Addr().String(), Link{Delay: delay, Bandwidth: bw, NoSetupCost: true})
	best := 0.0
	for range 4 {
		if best >= bw*0.9 {
			break
		}
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		go func() {
			c.Write(make([]byte, size))
			c.Close()
		}()
		n, _ := io.Copy(io.Discard, s)
		el := time.Since(start) - delay
		s.Close()
		if n != size {
			t.Fatalf("received %d bytes, want %d", n, size)
		}
		best = max(best, float64(n)/el.Seconds())
	}
	if best < bw*0.9 || best > bw*1.1 {
		t.Errorf("throughput %.0f B/s, want %d B/s ±10%%", best, bw)
	}
}

// TestDelayLineCloseLeaksNothing checks that Close ends every relay goroutine, even with
// connections open in both directions.
func TestDelayLineCloseLeaksNothing(t *testing.T) {
	target := echoServer(t)
	before := runtime.NumGoroutine()
	d, err := NewDelayLine("", target, Link{Delay: time.Millisecond, Bandwidth: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hello"))
		conns = append(conns, c)
	}
	pingPong(t, conns[0])
	d.Close()
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+1 { // the echo server may still be closing one
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond) // polling for an external effect
	}
	if _, err := net.Dial("tcp", d.Addr()); err == nil {
		t.Error("the line still accepts after Close")
	}
}

// BenchmarkDelayLineRoundTrip measures the relay's own cost per round trip (zero delay).
func BenchmarkDelayLineRoundTrip(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	d, err := NewDelayLine("", ln.Addr().String(), Link{NoSetupCost: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c, err := net.Dial("tcp", d.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := []byte{'x'}
	for b.Loop() {
		c.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
