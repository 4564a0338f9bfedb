package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"matchbox/store"
	"matchbox/version"
)

// sharedInstances is a store that instances register in (etcd).
type sharedInstances interface {
	Register(ctx context.Context, inst store.Instance, ttl time.Duration) error
	Instances(ctx context.Context) ([]store.Instance, error)
}

// instances answers GET /api/v1/instances: the instances registered in a
// shared store, or this one alone on SQLite.
type instances struct {
	shared sharedInstances // nil: not shared
	mu     sync.Mutex
	self   store.Instance
}

// Instances lists the instances sharing the store.
func (i *instances) Instances(ctx context.Context) ([]store.Instance, error) {
	if i.shared != nil {
		return i.shared.Instances(ctx)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.self.ID == "" {
		return nil, nil
	}
	return []store.Instance{i.self}, nil
}

// register announces this instance, serving on addrs, until ctx ends.
func (i *instances) register(ctx context.Context, addrs, dhcpRanges []string, ttl time.Duration) (store.Instance, error) {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	self := store.Instance{ID: host + "-" + hex.EncodeToString(b), Addresses: addrs, Version: version.Get().Version, DHCPRanges: dhcpRanges, StartedAt: time.Now().UTC()}
	i.mu.Lock()
	i.self = self
	i.mu.Unlock()
	if i.shared == nil {
		return self, nil
	}
	if err := i.shared.Register(ctx, self, ttl); err != nil {
		return self, fmt.Errorf("register this instance: %w", err)
	}
	return self, nil
}

// listenAddrs returns the addresses of listeners for the registration.
func listenAddrs(lns ...net.Listener) []string {
	var out []string
	for _, ln := range lns {
		if ln != nil {
			out = append(out, ln.Addr().String())
		}
	}
	return out
}
