package tftp

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Bounds of the file cache: boot files (undionly.kpxe, ipxe.efi,
// snponly.efi) are tens of KiB to about a MiB, and every machine of a
// storm asks for the same one.
const (
	maxCachedFile  = 8 << 20
	maxCachedTotal = 64 << 20
)

// fileCache holds the contents of the files served, shared by every
// transfer of the same file, so that a storm of thousands of transfers
// holds one copy instead of a read buffer each (64 KiB per transfer made
// 183 MiB in use at 5,000 machines) and reads the disk once. An entry is
// valid while the file keeps its size and modification time; a changed
// file is read again. At most maxCachedTotal bytes are held; files past
// it, or larger than maxCachedFile, are read per transfer.
type fileCache struct {
	mu    sync.Mutex
	files map[string]*cachedFile
	total int64
}

// cachedFile is one file's contents as read when it had size and modTime.
type cachedFile struct {
	size    int64
	modTime time.Time
	data    []byte
}

// contents returns the contents of f (opened as name, fi its Stat), from
// the cache or read now, or nil when the file is not to be cached: then
// the caller reads it itself.
func (c *fileCache) contents(name string, f *os.File, fi fs.FileInfo) ([]byte, error) {
	size := fi.Size()
	if size > maxCachedFile {
		return nil, nil
	}
	c.mu.Lock()
	e := c.files[name]
	if e != nil && e.size == size && e.modTime.Equal(fi.ModTime()) {
		c.mu.Unlock()
		return e.data, nil
	}
	var held int64
	if e != nil {
		held = e.size
	}
	full := c.total-held+size > maxCachedTotal
	c.mu.Unlock()
	if full {
		return nil, nil
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && !(err == io.EOF && size == 0) {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	// A file written while it was read is not kept: the next transfer
	// reads it again.
	if after, err := f.Stat(); err != nil || after.Size() != size || !after.ModTime().Equal(fi.ModTime()) {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]*cachedFile{}
	}
	if old := c.files[name]; old != nil {
		c.total -= old.size
	}
	if c.total+size > maxCachedTotal {
		delete(c.files, name)
		return data, nil
	}
	c.files[name] = &cachedFile{size: size, modTime: fi.ModTime(), data: data}
	c.total += size
	return data, nil
}
