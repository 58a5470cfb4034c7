//go:build unix

package sim

import "syscall"

// openFileLimit is the process's limit on open files (0 if unknown).
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return 0
	}
	return r.Cur
}
