package worker

import "runtime"

func defaultConcurrency() int { return runtime.NumCPU() }
