package bench

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
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
			for range 3 {
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
			slices.Sort(rtts)
			if med := rtts[len(rtts)/2]; med > rtt*3/2 {
				t.Errorf("ping-pong: median %v much above RTT %v", med, rtt)
			}
		})
	}
}

func TestDelayLineNoSetupCost(t *testing.T) {
	d := newLine(t, echoServer(t), Link{Delay: 10 * time.Millisecond, NoSetupCost: true})
	var firsts []time.Duration
	for range 3 {
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, pingPong(t, c))
		c.Close()
	}
	if m := slices.Min(firsts); !within(m, 20*time.Millisecond, 0.10) {
		t.Errorf("first exchange without setup cost: min %v, want 20ms ±10%%", m)
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
// written 8 ms apart arrive 8 ms apart, each Delay after it was written.
func TestDelayLineChunkTiming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	arrivals := make(chan time.Time, 8)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				close(arrivals)
				return
			}
			arrivals <- time.Now()
		}
	}()
	const delay = 15 * time.Millisecond
	d := newLine(t, ln.Addr().String(), Link{Delay: delay, NoSetupCost: true})
	c, err := net.Dial("tcp", d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var sent []time.Time
	for range 3 {
		sent = append(sent, time.Now())
		c.Write([]byte{'x'})
		time.Sleep(8 * time.Millisecond) // the spacing under test, not synchronisation
	}
	c.Close()
	i := 0
	for at := range arrivals {
		lag := at.Sub(sent[i])
		if lag < delay*9/10 || lag > delay*2 {
			t.Errorf("chunk %d arrived %v after it was written, want about %v", i, lag, delay)
		}
		i++
	}
	if i != 3 {
		t.Fatalf("got %d chunks, want 3", i)
	}
}

func TestDelayLineBandwidth(t *testing.T) {
	const bw = 2 << 20 // 2 MiB/s
	const size = 400 << 10
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := newLine(t, ln.Addr().String(), Link{Delay: 2 * time.Millisecond, Bandwidth: bw, NoSetupCost: true})
	best := 0.0
	for range 2 {
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c.Write(make([]byte, size))
			c.Close()
		}()
		buf := make([]byte, 64<<10)
		n, err := io.ReadAtLeast(s, buf, 1)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rest, _ := io.Copy(io.Discard, s)
		el := time.Since(start)
		s.Close()
		if total := int64(n) + rest; total != size {
			t.Fatalf("received %d bytes, want %d", total, size)
		}
		best = max(best, float64(rest)/el.Seconds())
	}
	if best < bw*0.9 || best > bw*1.1 {
		t.Errorf("throughput %.0f B/s, want %d B/s ±10%%", best, bw)
	}
}
