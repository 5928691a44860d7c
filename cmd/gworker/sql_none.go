//go:build gworker_nosql

package main

import "github.com/gworker/gworker/result"

// extraBackends is empty: this build leaves the SQL backends and their
// database drivers out (-tags gworker_nosql).
var extraBackends []func(*result.Registry)

// withSQL says whether this build has the SQL backends.
const withSQL = false
