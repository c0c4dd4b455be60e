//go:build !linux

package bench

import "context"

// checkLabSupport: the lab needs Linux network namespaces.
func checkLabSupport() error {
	return usagef("outpost lab needs Linux network namespaces")
}

func runLab(context.Context, LabOptions) (*LabResult, error) { return nil, checkLabSupport() }

// CleanStaleLabs: nothing to clean without Linux network namespaces.
func CleanStaleLabs() ([]string, error) { return nil, checkLabSupport() }
