package matchbox

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// translateCacheBytes bounds the Ignition JSON one Butane template's
// translation cache keeps: about 30,000 machines' configs of 1 KiB.
const translateCacheBytes = 32 << 20

// translateCache remembers the Ignition JSON that Butane translation gave
// for rendered Butane texts, keyed by the SHA-256 of the rendered text:
// translation is a pure function of that text, so an answer from the cache
// is the answer a translation would give. It belongs to one compiled
// template (and so lives as long as the template is unchanged); when full
// it forgets its oldest entries first. It is safe for concurrent use.
type translateCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte][]byte
	order   [][sha256.Size]byte // insertion order, oldest first
	bytes   int
	max     int
	// requested counts the translations requests made (cache misses).
	requested atomic.Int64
}

func newTranslateCache(maxBytes int) *translateCache {
	return &translateCache{entries: map[[sha256.Size]byte][]byte{}, max: maxBytes}
}

// get returns the translation of the rendered text with this key.
func (c *translateCache) get(key [sha256.Size]byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, ok := c.entries[key]
	return out, ok
}

// put remembers a translation; out must not be changed afterwards.
func (c *translateCache) put(key [sha256.Size]byte, out []byte) {
	if len(out) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	for c.bytes+len(out) > c.max && len(c.order) > 0 {
		oldest := c.order[0]
		c.order = c.order[1:]
		c.bytes -= len(c.entries[oldest])
		delete(c.entries, oldest)
	}
	c.entries[key] = out
	c.order = append(c.order, key)
	c.bytes += len(out)
}

// len returns how many translations are cached.
func (c *translateCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
