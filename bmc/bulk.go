package bmc

import (
	"context"
	"sync"
	"time"
)

// RunAll runs fn for every target with at most parallel calls at once (a
// value below 1 means 1) and returns one Outcome per target, in the order of
// targets. Targets not started when ctx ends get ctx's error. fn usually
// wraps a Controller method, e.g.
//
//	bmc.RunAll(ctx, targets, 8, func(ctx context.Context, t bmc.Target) (bmc.Result, error) {
//		return ctl.ProvisionBoot(ctx, t.Endpoint)
//	})
func RunAll(ctx context.Context, targets []Target, parallel int, fn func(ctx context.Context, t Target) (Result, error)) []Outcome {
	if parallel < 1 {
		parallel = 1
	}
	out := make([]Outcome, len(targets))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		out[i].ID = t.ID
		acquired := false
		if ctx.Err() == nil {
			select {
			case sem <- struct{}{}:
				acquired = true
			case <-ctx.Done():
			}
		}
		if acquired && ctx.Err() != nil {
			<-sem // ctx ended while waiting for a slot
			acquired = false
		}
		if !acquired {
			out[i].Result = Result{Endpoint: t.Endpoint.String(), Started: time.Now(), PowerState: PowerUnknown}
			out[i].Err = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i].Result, out[i].Err = fn(ctx, t)
		}()
	}
	wg.Wait()
	return out
}
