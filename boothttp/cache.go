package boothttp

import (
	"sync"
	"sync/atomic"

	"matchbox/matchbox"
)

// scriptCache keeps boot scripts of profiles without templated arguments,
// rendered once per snapshot: such a script is the same for every machine
// until the catalog changes. A new snapshot starts an empty cache.
type scriptCache struct {
	cur atomic.Pointer[scriptGeneration]
}

type scriptGeneration struct {
	snap    *matchbox.Snapshot
	scripts sync.Map // scriptKey -> []byte
}

type scriptKey struct{ kind, profile string }

func (c *scriptCache) generation(snap *matchbox.Snapshot) *scriptGeneration {
	g := c.cur.Load()
	if g != nil && g.snap == snap {
		return g
	}
	fresh := &scriptGeneration{snap: snap}
	if c.cur.CompareAndSwap(g, fresh) {
		return fresh
	}
	if g = c.cur.Load(); g != nil && g.snap == snap {
		return g
	}
	return fresh // raced with another snapshot: use a private generation
}

func (c *scriptCache) get(snap *matchbox.Snapshot, kind, profile string) ([]byte, bool) {
	v, ok := c.generation(snap).scripts.Load(scriptKey{kind, profile})
	if !ok {
		return nil, false
	}
	return v.([]byte), true
}

func (c *scriptCache) put(snap *matchbox.Snapshot, kind, profile string, script []byte) {
	c.generation(snap).scripts.Store(scriptKey{kind, profile}, append([]byte(nil), script...))
}
