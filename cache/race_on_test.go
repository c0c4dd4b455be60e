//go:build race

package cache

// raceEnabled reports a -race build (heap measurements are not meaningful there).
const raceEnabled = true
