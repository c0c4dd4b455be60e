//go:build race

package proxy

// raceEnabled reports a -race build (memory measurements are not meaningful there).
const raceEnabled = true
