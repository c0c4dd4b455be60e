package bench

import (
	"context"
	"testing"
	"time"
)

func TestScorecardMatchesModel(t *testing.T) {
	origin := testOrigin(t)
	for _, tc := range []struct {
		name string
		opts ScorecardOptions
	}{
		{"n=4 rtt=20ms", ScorecardOptions{N: 4, RTT: 20 * time.Millisecond, Parallel: 2}},
		{"bandwidth bound", ScorecardOptions{N: 4, Size: 32 << 10, RTT: 10 * time.Millisecond, Parallel: 2,
			Bandwidth: 1 << 20, Strategies: []string{StrategyNonPersistent, StrategyPipelined}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Origin, o.Target, o.ProxyCache, o.Repeat = origin, "origin", "cold", 3
			sc, err := RunScorecard(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range sc.Rows {
				t.Logf("%-18s measured %-8v model %-8v (%s) ratio %.2f", r.Strategy, r.Measured.Round(time.Millisecond),
					r.Model.Round(time.Millisecond), r.Formula, r.Ratio)
				if r.Ratio < 0.85 || r.Ratio > 1.25 {
					t.Errorf("%s: measured/model = %.2f, want 0.85–1.25", r.Strategy, r.Ratio)
				}
			}
		})
	}
}

func TestScorecardOptionsValidate(t *testing.T) {
	good := ScorecardOptions{Origin: "http://127.0.0.1:1", Target: "origin", N: 1, Parallel: 1, Repeat: 1, ProxyCache: "cold"}
	for _, tc := range []struct {
		name string
		edit func(*ScorecardOptions)
		ok   bool
	}{
		{"good", func(*ScorecardOptions) {}, true},
		{"n zero", func(o *ScorecardOptions) { o.N = 0 }, false},
		{"n negative", func(o *ScorecardOptions) { o.N = -3 }, false},
		{"unknown strategy", func(o *ScorecardOptions) { o.Strategies = []string{"telepathy"} }, false},
		{"bad target", func(o *ScorecardOptions) { o.Target = "moon" }, false},
		{"proxy without url", func(o *ScorecardOptions) { o.Target = "proxy" }, false},
		{"negative rtt", func(o *ScorecardOptions) { o.RTT = -time.Second }, false},
		{"bad origin", func(o *ScorecardOptions) { o.Origin = "ftp://x" }, false},
		{"repeat zero", func(o *ScorecardOptions) { o.Repeat = 0 }, false},
		{"bad cache", func(o *ScorecardOptions) { o.ProxyCache = "tepid" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			err := o.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, ok = %v", err, tc.ok)
			}
			if err != nil && !IsUsage(err) {
				t.Errorf("%v is not a *UsageError", err)
			}
		})
	}
}
