package boothttp

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"matchbox/matchbox"
)

// renderCacheBytes bounds the answers one snapshot's render cache keeps:
// about 64,000 machines' answers of 1 KiB.
const renderCacheBytes = 64 << 20

// renderCache keeps rendered answers (boot scripts, Ignition, generic
// configs) of the current snapshot. An answer is a function of the
// snapshot and of the variables its template reads: the group (its
// metadata and selector), the extra variables the template names (the
// lifecycle's machine_id, agent_token, ...) and, for a template that
// names request, the request's labels and raw query. The key holds
// exactly those (see appendAnswerKey), so a cached answer is the answer a
// render would give. Templates that may read any variable are not cached.
// A new snapshot starts an empty cache; a full one starts over. Only the
// snapshot current at the source (current) starts a generation: a request
// of an older snapshot that finishes after the swap renders into a private
// generation, so its answers never enter the cache nor replace the newer
// generation.
type renderCache struct {
	cur atomic.Pointer[renderGeneration]
	// current returns the source's current snapshot (Config.Snapshot).
	current func() *matchbox.Snapshot
	max     int // bytes per generation; 0: renderCacheBytes
	// hits and misses count lookups of cacheable answers.
	hits, misses atomic.Int64
}

type renderGeneration struct {
	snap    *matchbox.Snapshot
	mu      sync.RWMutex
	answers map[string]*cachedAnswer
	bytes   int
}

// cachedAnswer is a rendered answer and its Content-Length header value,
// formatted once.
type cachedAnswer struct {
	body   []byte
	length []string
}

func newCachedAnswer(body []byte) *cachedAnswer {
	return &cachedAnswer{body: body, length: []string{strconv.Itoa(len(body))}}
}

func (c *renderCache) generation(snap *matchbox.Snapshot) *renderGeneration {
	g := c.cur.Load()
	if g != nil && g.snap == snap {
		return g
	}
	fresh := &renderGeneration{snap: snap, answers: map[string]*cachedAnswer{}}
	// current is read after g: a generation installed after g was loaded
	// fails the swap below, one installed before is not older than snap
	// when snap is still current.
	if c.current() != snap {
		return fresh // an older snapshot's request: use a private generation
	}
	if c.cur.CompareAndSwap(g, fresh) {
		return fresh
	}
	if g = c.cur.Load(); g != nil && g.snap == snap {
		return g
	}
	return fresh // raced with another snapshot: use a private generation
}

// get returns the answer kept under key (looked up without converting
// key to a string).
func (c *renderCache) get(snap *matchbox.Snapshot, key []byte) (*cachedAnswer, bool) {
	g := c.generation(snap)
	g.mu.RLock()
	out, ok := g.answers[string(key)]
	g.mu.RUnlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return out, ok
}

// put keeps a copy of answer under key and returns it.
func (c *renderCache) put(snap *matchbox.Snapshot, key []byte, answer []byte) *cachedAnswer {
	kept := newCachedAnswer(append([]byte(nil), answer...))
	g := c.generation(snap)
	size := len(key) + len(answer)
	max := c.max
	if max <= 0 {
		max = renderCacheBytes
	}
	if size > max {
		return kept
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if prev, ok := g.answers[string(key)]; ok {
		return prev
	}
	if g.bytes+size > max {
		clear(g.answers)
		g.bytes = 0
	}
	g.answers[string(key)] = kept
	g.bytes += size
	return kept
}

// answerKeyBuf is the room on the stack for an answer's key: keys of
// boot scripts naming group metadata fit, longer ones grow on the heap.
const answerKeyBuf = 128

// appendAnswerKey appends to dst the key of an answer of kind (ipxe,
// grub, ignition, generic) rendered from template id (a profile for boot
// scripts) with refs for a request selecting group, with extra variables
// extra; ok is false when the answer cannot be cached (the template may
// read any variable, or reads an extra variable that is not a string).
func appendAnswerKey(dst []byte, kind, id string, refs *matchbox.VarRefs, group *matchbox.Group, extra map[string]any, req *matchbox.Request) (key []byte, ok bool) {
	if refs.All() {
		return dst, false
	}
	b := dst
	field := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	field(kind)
	field(id)
	if refs.None() {
		return b, true
	}
	field(group.ID)
	if len(extra) > 0 {
		names := make([]string, 0, len(extra))
		for k := range extra {
			if refs.Uses(k) {
				names = append(names, k)
			}
		}
		slices.Sort(names)
		for _, k := range names {
			v, isString := extra[k].(string)
			if !isString {
				return dst, false
			}
			field(k)
			field(v)
		}
	}
	if refs.Uses("request") {
		b = append(b, "request"...)
		field(req.RawQuery)
		names := make([]string, 0, len(req.Labels))
		for k := range req.Labels {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			field(k)
			field(req.Labels[k])
		}
	}
	return b, true
}
