package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
)

// Singleton jobs and their leases.
const (
	// LeaseRolloutController and LeaseRefresher name the leases of the
	// periodic jobs only one replica runs at a time.
	LeaseRolloutController = "rollout-controller"
	LeaseRefresher         = "metadata-refresher"
	// LeaseVigilance is the vigilance job's (SBOM indexing, clocks); each
	// scheduled feed has its own, "feed:" + its name.
	LeaseVigilance = "vigilance"
	// LeaseSessions is the console session purge's, run every
	// SessionPurgeInterval.
	LeaseSessions        = "session-purge"
	SessionPurgeInterval = 10 * time.Minute
	// LeaseTTLFactor: a lease lasts this many job intervals, so a holder
	// that dies is replaced within that time.
	LeaseTTLFactor = 3
)

// startJobs starts the periodic jobs: on every replica, writing its own
// buffer of check-ins; on one replica at a time (a lease), re-signing the
// online metadata and applying the rollout rules.
func (s *Server) startJobs(ctx context.Context) {
	if s.holder == "" {
		b := make([]byte, 8)
		rand.Read(b)
		s.holder = hex.EncodeToString(b)
	}
	go s.Fleet.CheckIns.RunFlusher(ctx)
	go s.Served.Run(ctx)
	go RunSingleton(ctx, s.State, s.holder, LeaseRefresher, s.cfg.OnlineRefreshInterval, s.log, func(ctx context.Context) {
		if _, err := s.Repo.RefreshOnline(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("re-signing online metadata failed", zap.Error(err))
		}
	})
	go RunSingleton(ctx, s.State, s.holder, LeaseRolloutController, RolloutControllerInterval, s.log, s.Fleet.Rollouts.Evaluate)
	go RunSingleton(ctx, s.State, s.holder, LeaseVigilance, s.cfg.VigilanceInterval, s.log, s.vigilanceJob)
	go RunSingleton(ctx, s.State, s.holder, LeaseSessions, SessionPurgeInterval, s.log, func(ctx context.Context) {
		if _, err := s.ops.PurgeSessions(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("purging ended console sessions failed", zap.Error(err))
		}
	})
	if s.Alerts != nil {
		go s.Alerts.Run(ctx)
	}
	go RunSingleton(ctx, s.State, s.holder, LeaseOrphans, OrphanSweepInterval, s.log, func(ctx context.Context) {
		if _, err := s.Repo.RemoveOrphanUploads(ctx, s.cfg.OrphanUploadAge); err != nil && ctx.Err() == nil {
			s.log.Warn("removing orphaned uploads failed; will retry", zap.Error(err))
		}
	})
	go RunSingleton(ctx, s.State, s.holder, LeaseNotices, s.cfg.NoticeInterval, s.log, func(ctx context.Context) {
		if _, err := s.Notices.Deliver(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("delivering notices failed; will retry", zap.Error(err))
		}
	})
	fetcher := &vigilance.Fetcher{Service: s.Vigilance, TempDir: filepath.Join(s.cfg.DataDir, FeedTempDirName)}
	for _, fc := range s.feeds {
		go RunSingleton(ctx, s.State, s.holder, "feed:"+fc.Name(), fc.Interval, s.log, func(ctx context.Context) {
			rep, notModified, err := fetcher.Fetch(ctx, fc)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Warn("scheduled feed failed", zap.String("feed", fc.Name()), zap.Error(err))
			case notModified:
				s.log.Info("scheduled feed not modified", zap.String("feed", fc.Name()))
			case err == nil:
				s.log.Info("scheduled feed imported", zap.String("feed", fc.Name()), zap.Int("new", rep.New), zap.Int("changed", rep.Changed))
			}
		})
	}
}

// vigilanceJob indexes SBOMs a publish on any replica left unindexed, then
// evaluates the findings' clocks.
func (s *Server) vigilanceJob(ctx context.Context) {
	if _, err := s.Vigilance.SyncSBOMs(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("indexing published SBOMs failed", zap.Error(err))
	}
	s.Vigilance.EvaluateClocks(ctx)
}

// RunSingleton runs job now and then every interval while this replica
// (holder) holds lease name, until ctx ends; then it gives the lease up.
// Another replica takes the lease over within LeaseTTLFactor intervals of
// this one dying.
func RunSingleton(ctx context.Context, leases state.LeaseStore, holder, name string, interval time.Duration, log *zap.Logger, job func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	held := false
	for {
		ok, err := leases.TryLease(ctx, name, holder, time.Now(), LeaseTTLFactor*interval)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("lease not taken", zap.String("lease", name), zap.Error(err))
		case ok && !held:
			log.Info("this replica runs the job", zap.String("lease", name))
		}
		held = ok && err == nil
		if held {
			job(ctx)
		}
		select {
		case <-ctx.Done():
			if held {
				leases.ReleaseLease(context.WithoutCancel(ctx), name, holder)
			}
			return
		case <-t.C:
		}
	}
}
