// Package version holds the gworker release: the App reports it to other
// nodes (sw_ver) and the command line prints it.
package version

// Version is the gworker release.
const Version = "0.2.0"
