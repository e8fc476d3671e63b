// Package failpoint lets the crash-injection tests kill the agent at a named
// point of an install. With VIGIL_AGENT_FAILPOINT=NAME in its environment the
// agent sends itself SIGKILL when it reaches point NAME: no deferred code
// runs and no buffer is flushed, as in a crash. Without the variable, Hit
// does nothing. The names are listed in docs/agent.md.
package failpoint

import (
	"os"
	"syscall"
)

// Env is the variable that arms a failpoint.
const Env = "VIGIL_AGENT_FAILPOINT"

var armed = os.Getenv(Env)

// Hit kills the process if name is the armed failpoint.
func Hit(name string) {
	if armed != "" && armed == name {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not handled; wait for it to land
	}
}
