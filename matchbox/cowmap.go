package matchbox

import "maps"

// cowShards is how many shards a cowMap splits its keys into.
const cowShards = 64

// cowMap is a map from strings split into shards, so that a snapshot
// derived from another shares the shards no change touches and copies only
// the others: a write of one object to a catalog of thousands copies a
// sixty-fourth of each index instead of all of it. A cowMap is written only
// while the snapshot holding it is built.
type cowMap[V any] struct {
	shards [cowShards]map[string]V
	owned  [cowShards]bool // shards this map has copied, and may write
}

func newCowMap[V any]() *cowMap[V] { return &cowMap[V]{} }

// derive returns a map with m's content that shares m's shards until it
// writes to them. m is never written through it.
func (m *cowMap[V]) derive() *cowMap[V] {
	if m == nil {
		return newCowMap[V]()
	}
	return &cowMap[V]{shards: m.shards}
}

func shardOf(k string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return int(h % cowShards)
}

// get returns k's value.
func (m *cowMap[V]) get(k string) (V, bool) {
	if m == nil {
		var zero V
		return zero, false
	}
	v, ok := m.shards[shardOf(k)][k]
	return v, ok
}

// own makes shard i m's own copy, so that writing it leaves other maps alone.
func (m *cowMap[V]) own(i int) map[string]V {
	if !m.owned[i] {
		if m.shards[i] == nil {
			m.shards[i] = map[string]V{}
		} else {
			m.shards[i] = maps.Clone(m.shards[i])
		}
		m.owned[i] = true
	}
	return m.shards[i]
}

// set sets k's value.
func (m *cowMap[V]) set(k string, v V) { m.own(shardOf(k))[k] = v }

// remove deletes k.
func (m *cowMap[V]) remove(k string) {
	i := shardOf(k)
	if _, ok := m.shards[i][k]; ok {
		delete(m.own(i), k)
	}
}

// each calls fn with every value, in no particular order.
func (m *cowMap[V]) each(fn func(V)) {
	if m == nil {
		return
	}
	for _, sh := range m.shards {
		for _, v := range sh {
			fn(v)
		}
	}
}
