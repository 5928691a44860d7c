//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownGroup makes the command, once started, the leader of a process group
// of its own, so that killGroup reaches whatever children it starts.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends SIGKILL to the process group the started command leads.
func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

// terminate asks the started command for a warm shutdown (SIGTERM).
func terminate(cmd *exec.Cmd) { _ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM) }
