package interlock_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/agent/internal/interlock"
)

func TestInterlockAnswers(t *testing.T) {
	busyFile := filepath.Join(t.TempDir(), "in-use")
	cases := []struct {
		name   string
		il     interlock.Interlock
		file   string
		busy   bool
		reason string
	}{
		{"nothing configured", interlock.Interlock{}, "", false, ""},
		{"command free", interlock.Interlock{Command: "exit 0"}, "", false, ""},
		{"command busy", interlock.Interlock{Command: "echo infusion running; exit 1"}, "", true, "infusion running"},
		{"command broken", interlock.Interlock{Command: "exit 7"}, "", true, "treated as in use"},
		{"command missing", interlock.Interlock{Command: "/no/such/check"}, "", true, "treated as in use"},
		{"file present", interlock.Interlock{File: busyFile}, "bed 4 ventilated", true, "bed 4 ventilated"},
		{"file absent", interlock.Interlock{File: busyFile}, "", false, ""},
	}
	for _, c := range cases {
		os.Remove(busyFile)
		if c.file != "" {
			os.WriteFile(busyFile, []byte(c.file), 0o644)
		}
		busy, reason := c.il.Busy(t.Context())
		if busy != c.busy || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: busy=%v reason=%q", c.name, busy, reason)
		}
	}
}
