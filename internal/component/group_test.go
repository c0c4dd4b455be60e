package component

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake is a component whose lifecycle steps are scripted and recorded.
type fake struct {
	name      string
	listenErr error
	serveErr  error
	log       *[]string
	mu        *sync.Mutex
	stop      chan struct{}
}

func (f *fake) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.log = append(*f.log, f.name+" "+s)
}
func (f *fake) Name() string    { return f.name }
func (f *fake) Addrs() []string { return []string{"tcp 127.0.0.1:0"} }
func (f *fake) Listen(context.Context) error {
	f.record("listen")
	return f.listenErr
}
func (f *fake) Serve(context.Context) error {
	f.record("serve")
	if f.serveErr != nil {
		return f.serveErr
	}
	<-f.stop
	return nil
}
func (f *fake) Shutdown(context.Context) error {
	f.record("shutdown")
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	return nil
}

func fakes(names ...string) ([]*fake, *[]string) {
	var log []string
	var mu sync.Mutex
	var fs []*fake
	for _, n := range names {
		fs = append(fs, &fake{name: n, log: &log, mu: &mu, stop: make(chan struct{})})
	}
	return fs, &log
}

func group(fs []*fake) *Group {
	cs := make([]Component, len(fs))
	for i, f := range fs {
		cs[i] = f
	}
	return NewGroup(slog.New(slog.DiscardHandler), cs...)
}

func grace() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func TestListenFailureShutsDownTheBound(t *testing.T) {
	fs, log := fakes("a", "b", "c")
	fs[1].listenErr = errors.New("address already in use")
	err := group(fs).Listen(context.Background())
	if err == nil || err.Error() != "b: address already in use" {
		t.Fatalf("err = %v, want it to name component b", err)
	}
	want := []string{"a listen", "b listen", "a shutdown"}
	if !slices.Equal(*log, want) {
		t.Errorf("lifecycle %v, want %v", *log, want)
	}
}

func TestRunStopsInReverseOrder(t *testing.T) {
	tests := []struct {
		name     string
		failing  string // a component whose Serve fails; "" = cancel the context instead
		wantErr  bool
		wantTail []string
	}{
		{name: "signal", wantTail: []string{"c shutdown", "b shutdown", "a shutdown"}},
		{name: "component fails", failing: "b", wantErr: true, wantTail: []string{"c shutdown", "b shutdown", "a shutdown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, log := fakes("a", "b", "c")
			for _, f := range fs {
				if f.name == tt.failing {
					f.serveErr = errors.New("boom")
				}
			}
			g := group(fs)
			if err := g.Listen(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.failing == "" {
				cancel() // as a signal would: Run still starts everything, then shuts it down
			}
			err := g.Run(ctx, grace)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Run = %v, want error %v", err, tt.wantErr)
			}
			if g.Ready() {
				t.Error("still ready after Run returned")
			}
			var shutdowns []string
			for _, l := range *log {
				if strings.HasSuffix(l, " shutdown") {
					shutdowns = append(shutdowns, l)
				}
			}
			if !slices.Equal(shutdowns, tt.wantTail) {
				t.Errorf("shutdown order %v, want %v", shutdowns, tt.wantTail)
			}
		})
	}
}
