// Package events is the agent's on-disk outbox of install events. Every
// state change becomes one file, written durably before the agent acts on
// the next step, and stays until the server has acknowledged it: nothing is
// lost while the device is offline or across restarts. Each event's id is
// derived from what it reports, so an event written twice (say, re-emitted
// after a crash) is stored once here and counted once by the server.
//
// A bounded history (history.jsonl) keeps the latest events for
// `vigil-agent status` after they have been delivered.
//
// Concurrency: safe for use by the engine and the sender goroutine at once.
package events

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/api"
)

// Limits and delays, with their units.
const (
	// MaxBatch is the most events sent in one request.
	MaxBatch = 100
	// HistoryKeep is how many events `status` can show.
	HistoryKeep = 200
	// MinBackoff and MaxBackoff bound the wait after a failed delivery.
	MinBackoff = time.Second
	MaxBackoff = 5 * time.Minute
	// MaxReasonLength bounds a reason's bytes.
	MaxReasonLength = 1024
	// MaxQueued bounds the outbox: past it the oldest events are dropped
	// (they stay in the history), so a device the server keeps refusing
	// does not fill its disk.
	MaxQueued = 10000
)

// Refusal is the server's last refusal of the outbox's events (a 4xx that
// retrying will not change, e.g. a device that is not registered): what
// `vigil-agent status` shows until a delivery succeeds.
type Refusal struct {
	Time    time.Time `json:"time"`
	Status  int       `json:"status"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
}

func (q *Queue) refusalPath() string {
	return filepath.Join(filepath.Dir(q.dir), "events-refused.json")
}

// LastRefusal returns the standing refusal (nil: none).
func LastRefusal(dataDir string) (*Refusal, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "events-refused.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Refusal
	return &r, json.Unmarshal(b, &r)
}

// noteOutcome records a refusal, or clears it after a delivery.
func (q *Queue) noteOutcome(err error, now time.Time) {
	var ae *api.Error
	if err == nil {
		os.Remove(q.refusalPath())
		return
	}
	if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 || ae.Status == 408 || ae.Status == 429 {
		return // transient: the network, the server busy
	}
	b, _ := json.Marshal(Refusal{Time: now.UTC(), Status: ae.Status, Code: ae.Code, Message: ae.Message})
	journal.WriteFileDurable(q.refusalPath(), b, 0o600)
}

// Queue is the outbox in a directory.
type Queue struct {
	dir string
	mu  sync.Mutex
}

// Open returns the queue in dir/outbox.
func Open(dataDir string) (*Queue, error) {
	q := &Queue{dir: filepath.Join(dataDir, "outbox")}
	return q, os.MkdirAll(q.dir, 0o700)
}

// ID derives an event id from its content and a discriminator (the install
// attempt and boot attempt), so re-emitting the same change gives the same id.
func ID(deviceID, target, state string, discriminator string) string {
	h := sha256.Sum256([]byte(deviceID + "\x00" + target + "\x00" + state + "\x00" + discriminator))
	return hex.EncodeToString(h[:16])
}

// Add stores an event durably; an event whose id is already queued is
// ignored.
func (q *Queue) Add(e api.DeviceEvent) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(e.Reason) > MaxReasonLength {
		e.Reason = e.Reason[:MaxReasonLength]
	}
	if matches, _ := filepath.Glob(filepath.Join(q.dir, "*-"+e.ID+".json")); len(matches) > 0 {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%020d-%s.json", e.Time.UnixNano(), e.ID)
	if err := journal.WriteFileDurable(filepath.Join(q.dir, name), b, 0o600); err != nil {
		return err
	}
	q.dropOldest()
	return q.appendHistory(b)
}

func (q *Queue) historyPath() string { return filepath.Join(filepath.Dir(q.dir), "history.jsonl") }

func (q *Queue) appendHistory(line []byte) error {
	lines, _ := q.readHistory()
	lines = append(lines, string(line))
	if len(lines) > HistoryKeep {
		lines = lines[len(lines)-HistoryKeep:]
	}
	return journal.WriteFileDurable(q.historyPath(), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func (q *Queue) readHistory() ([]string, error) {
	b, err := os.ReadFile(q.historyPath())
	if err != nil {
		return nil, err
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// History returns up to n latest events, oldest first.
func History(dataDir string, n int) ([]api.DeviceEvent, error) {
	q := &Queue{dir: filepath.Join(dataDir, "outbox")}
	lines, err := q.readHistory()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var out []api.DeviceEvent
	for _, l := range lines {
		var e api.DeviceEvent
		if json.Unmarshal([]byte(l), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// Pending returns queued events in the order they happened, with their
// file names.
func (q *Queue) Pending() ([]api.DeviceEvent, []string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var evs []api.DeviceEvent
	var keep []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(q.dir, n))
		if err != nil {
			return nil, nil, err
		}
		var e api.DeviceEvent
		if err := json.Unmarshal(b, &e); err != nil {
			continue // unreadable: left for inspection, never sent
		}
		evs = append(evs, e)
		keep = append(keep, n)
	}
	return evs, keep, nil
}

// dropOldest keeps the outbox within MaxQueued.
func (q *Queue) dropOldest() {
	entries, err := os.ReadDir(q.dir)
	if err != nil || len(entries) <= MaxQueued {
		return
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names[:max(0, len(names)-MaxQueued)] {
		os.Remove(filepath.Join(q.dir, n))
	}
}

// Ack removes delivered events.
func (q *Queue) Ack(names []string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, n := range names {
		if err := os.Remove(filepath.Join(q.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return journal.SyncDir(q.dir)
}

// Sender delivers queued events (api/client's device client).
type Sender interface {
	SendEvents(ctx context.Context, batch api.EventBatch) (api.EventBatchResponse, error)
}

// Flush sends every pending event, in batches; it stops at the first
// failure and returns it (the events stay queued).
func (q *Queue) Flush(ctx context.Context, s Sender) (int, error) {
	evs, names, err := q.Pending()
	if err != nil {
		return 0, err
	}
	sent := 0
	for len(evs) > 0 {
		n := min(len(evs), MaxBatch)
		if _, err := s.SendEvents(ctx, api.EventBatch{Events: evs[:n]}); err != nil {
			q.noteOutcome(err, time.Now())
			return sent, err
		}
		q.noteOutcome(nil, time.Now())
		if err := q.Ack(names[:n]); err != nil {
			return sent, err
		}
		sent += n
		evs, names = evs[n:], names[n:]
	}
	return sent, nil
}

// Backoff returns the wait after the given number of consecutive failures:
// doubling from MinBackoff up to MaxBackoff, with ±25 % jitter.
func Backoff(failures int) time.Duration {
	d := MinBackoff
	for i := 1; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, MaxBackoff)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}
