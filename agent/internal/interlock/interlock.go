// Package interlock answers one question before the agent installs or
// restarts anything: is the device in clinical use right now? The answer
// comes from a command (exit 0: free; exit 1: busy, its output is the
// reason; anything else: treated as busy, because an interlock that cannot
// answer must not let an install through) and/or a file (present: busy, its
// content is the reason).
package interlock

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// CommandTimeout bounds the interlock command.
const CommandTimeout = 30 * time.Second

// MaxReasonBytes bounds the reason kept from the command or file.
const MaxReasonBytes = 512

// Interlock is a configured clinical-use check. The zero value is always free.
type Interlock struct {
	Command string
	File    string
}

// Busy reports whether the device is in use, and why.
func (i Interlock) Busy(ctx context.Context) (bool, string) {
	if i.File != "" {
		b, err := os.ReadFile(i.File)
		switch {
		case err == nil:
			return true, reason(string(b), "busy file "+i.File+" is present")
		case !errors.Is(err, fs.ErrNotExist):
			return true, "busy file " + i.File + " cannot be read: " + err.Error()
		}
	}
	if i.Command != "" {
		ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, "sh", "-c", i.Command).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return false, ""
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return true, reason(string(out), "interlock command reports the device in use")
		default:
			return true, "interlock command failed (" + err.Error() + "): treated as in use"
		}
	}
	return false, ""
}

func reason(s, fallback string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return fallback
	}
	if len(s) > MaxReasonBytes {
		s = s[:MaxReasonBytes]
	}
	return "in clinical use: " + s
}
