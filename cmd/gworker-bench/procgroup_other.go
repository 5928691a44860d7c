//go:build !unix

package main

import "os/exec"

// ownGroup does nothing: this system has no Unix process groups, so
// killGroup reaches the command's process only, not children it starts.
func ownGroup(*exec.Cmd) {}

// killGroup kills the started command's process (TerminateProcess on
// Windows); children it started are not reached.
func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// terminate kills the started command: without Unix signals there is no
// warm shutdown to ask another process for.
func terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
