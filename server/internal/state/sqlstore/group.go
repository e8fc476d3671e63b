package sqlstore

import (
	"context"
	"sync"
)

// group gathers concurrent writes of one kind into one transaction (group
// commit): while one commit runs, the calls that arrive wait, and the next
// commit takes them all (up to a maximum). A commit's fixed cost, the WAL
// flush, is paid once per group instead of once per call, and nobody waits
// on a timer: under light load a group is one call.
//
// Concurrency: mu guards pending and busy. The caller that finds no commit
// running leads: it commits the first group (which holds its own request)
// and hands any further groups to a goroutine, so no caller waits for more
// than the commit in progress and its own.
type group[R any] struct {
	mu      sync.Mutex
	pending []groupEntry[R]
	busy    bool
}

type groupEntry[R any] struct {
	req  *R
	done chan struct{}
}

// run queues req and returns once a commit has handled it. tx stores a
// group in one transaction and sets each request's outcome; when it fails
// for a group, each request is tried alone, so one bad request does not
// fail the others, and fail records the error of a request that failed
// alone. Commits run without the caller's cancellation (other callers'
// requests ride on them).
func (g *group[R]) run(ctx context.Context, req *R, max int, tx func(context.Context, []*R) error, fail func(*R, error)) {
	commit := func(ctx context.Context, batch []*R) {
		if len(batch) > 1 && tx(ctx, batch) == nil {
			return
		}
		for _, r := range batch {
			if err := tx(ctx, []*R{r}); err != nil {
				fail(r, err)
			}
		}
	}
	done := make(chan struct{})
	g.mu.Lock()
	g.pending = append(g.pending, groupEntry[R]{req, done})
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if lead {
		g.lead(context.WithoutCancel(ctx), max, commit)
	}
	<-done
}

func (g *group[R]) lead(ctx context.Context, max int, commit func(context.Context, []*R)) {
	g.mu.Lock()
	batch := g.pending[:min(len(g.pending), max)]
	g.pending = g.pending[len(batch):]
	g.mu.Unlock()
	reqs := make([]*R, len(batch))
	for i, e := range batch {
		reqs[i] = e.req
	}
	commit(ctx, reqs)
	for _, e := range batch {
		close(e.done)
	}
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.busy = false
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	go g.lead(ctx, max, commit)
}
