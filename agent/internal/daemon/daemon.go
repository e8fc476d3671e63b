package daemon

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// deviceClient is the device's client of the server's API (api/client),
// signing every request with device_key. Without device_key the agent
// neither checks in nor can deliver events to a server that authenticates
// devices; it then installs the newest installable release on its own
// (install_policy newest).
func deviceClient(c Config) (*client.Client, error) {
	var key ed25519.PrivateKey
	if c.DeviceKey != "" {
		k, err := keyfile.ReadPrivate(c.DeviceKey)
		if err != nil {
			return nil, fmt.Errorf("device_key: %w", err)
		}
		ed, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("device_key: %s is not an ed25519 key", c.DeviceKey)
		}
		key = ed
	}
	return client.NewDevice(c.Server, c.DeviceID, key), nil
}

// NewEngine builds the install engine for c.
func NewEngine(c Config, log *zap.Logger) (*engine.Engine, error) {
	root, err := os.ReadFile(c.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("trusted_root: %w", err)
	}
	dc, err := deviceClient(c)
	if err != nil {
		return nil, err
	}
	var checkIn func(ctx context.Context, in api.CheckIn) (*api.Assignment, error)
	if c.InstallPolicy == PolicyAssigned {
		checkIn = dc.CheckIn
	} else {
		log.Warn("install_policy is newest: this device installs the newest release it may, with no rollout, no hospital approval, no window and no cap; use it only for devices outside any hospital (bench, lab)")
	}
	return engine.New(engine.Config{
		CheckIn:  checkIn,
		DeviceID: c.DeviceID, Product: c.Product, Hardware: c.Hardware, DataDir: c.DataDir,
		Server: c.Server, TrustedRoot: root, Slots: c.Backend(),
		HealthCommand: c.HealthCheck.Command, HealthTimeout: c.HealthCheck.Timeout,
		RestartCommand: c.RestartCommand, Interlock: c.InterlockCheck(), MaxBootAttempts: int(c.MaxBootAttempts),
		Download: tufclient.Limits{IdleTimeout: c.Download.IdleTimeout, MinRate: c.Download.MinRate},
		Log:      log, NoDeltas: !c.Deltas,
	})
}

// Run is the daemon: recover, then poll until ctx ends. With once, it runs
// one check (and one event delivery) and returns.
func Run(ctx context.Context, c Config, log *zap.Logger, once bool) error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return err
	}
	lock, err := journal.Lock(c.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	eng, err := NewEngine(c, log)
	if err != nil {
		return err
	}
	sender, err := deviceClient(c)
	if err != nil {
		return err
	}
	if err := eng.Recover(ctx); err != nil {
		log.Warn("recovering the interrupted install", zap.Error(err))
	}
	if once {
		checkErr := eng.Check(ctx)
		if _, err := eng.Queue().Flush(ctx, sender); err != nil {
			log.Warn("events not delivered yet; they stay queued", zap.Error(err))
		}
		return checkErr
	}

	go deliver(ctx, eng.Queue(), sender, c.EventInterval, log)
	failures := 0
	for {
		err := eng.Check(ctx)
		wait := jittered(c.PollInterval, c.PollJitter)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			wait = min(events.Backoff(failures), wait)
			log.Warn("update check failed; retrying", zap.Error(err), zap.Duration("in", wait))
		default:
			failures = 0
			if p := eng.State().Phase; p == journal.Deferred || p == journal.Staged || p == journal.Switched {
				wait = c.DeferRetry
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func jittered(interval, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return interval
	}
	return interval - jitter + time.Duration(rand.Int64N(int64(2*jitter)+1))
}

// deliver flushes the outbox every interval, backing off while the server
// is unreachable.
func deliver(ctx context.Context, q *events.Queue, s events.Sender, interval time.Duration, log *zap.Logger) {
	failures := 0
	for {
		wait := interval
		if _, err := q.Flush(ctx, s); err != nil {
			failures++
			wait = events.Backoff(failures)
			log.Info("events not delivered; will retry", zap.Error(err), zap.Duration("in", wait))
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
