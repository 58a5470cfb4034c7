//go:build !unix

package sim

func openFileLimit() uint64 { return 0 }
