// Package faultfs mounts a directory again through FUSE, as a loopback
// file system whose writes can be made to fail on demand: the storage
// failures of a disk that turns read-only (EROFS) or fails (EIO) under a
// running program, which file modes, chattr and a busy remount cannot
// produce for a root process. Tests use it; it needs root and /dev/fuse.
package faultfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted loopback of a directory. Reads always pass through;
// while Fail is set, every write fails with its errno: write, fsync,
// truncate, allocate, opening for writing, creating, removing and renaming.
type FS struct {
	server *fuse.Server
	dir    string
	errno  atomic.Int32 // 0: writes pass
}

// Mount mounts backing at dir (an existing empty directory) and serves it
// until Unmount.
func Mount(backing, dir string) (*FS, error) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("faultfs: no FUSE device: %w", err)
	}
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("faultfs: loopback of %s: %w", backing, err)
	}
	f := &FS{dir: dir}
	ln, ok := root.(*fs.LoopbackNode)
	if !ok {
		return nil, fmt.Errorf("faultfs: loopback root is a %T", root)
	}
	f.server, err = fs.Mount(dir, &node{LoopbackNode: ln, fs: f}, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      "faultfs",
			Name:        "faultfs",
			DirectMount: true, // as root: no fusermount needed
		},
	})
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount %s on %s: %w", backing, dir, err)
	}
	return f, nil
}

// Fail makes every later write fail with errno (syscall.EROFS: a
// read-only file system; syscall.EIO: a failing disk); 0 lets writes pass
// again.
func (f *FS) Fail(errno syscall.Errno) { f.errno.Store(int32(errno)) }

// failing returns the errno writes fail with, 0 when they pass.
func (f *FS) failing() syscall.Errno { return syscall.Errno(f.errno.Load()) }

// Unmount unmounts the file system (it fails while files are open on it).
func (f *FS) Unmount() error {
	if err := f.server.Unmount(); err != nil {
		return fmt.Errorf("faultfs: unmount %s: %w", f.dir, err)
	}
	return nil
}

// node is a loopback node whose writes fail on demand.
type node struct {
	*fs.LoopbackNode
	fs *FS
}

// WrapChild makes every node of the tree a node.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

// writeFlags are the open flags that ask for writing.
const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC | syscall.O_APPEND

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.fs.failing(); e != 0 && flags&writeFlags != 0 {
		return nil, 0, e
	}
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.fs.wrap(fh), fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := n.fs.failing(); e != 0 {
		return nil, nil, 0, e
	}
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return inode, n.fs.wrap(fh), fuseFlags, 0
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := n.fs.failing(); e != 0 {
		return e
	}
	if f, ok := fh.(*file); ok {
		fh = f.LoopbackFile
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if f, ok := fh.(*file); ok {
		fh = f.LoopbackFile
	}
	return n.LoopbackNode.Getattr(ctx, fh, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.fs.failing(); e != 0 {
		return e
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if e := n.fs.failing(); e != 0 {
		return e
	}
	if p, ok := newParent.(*node); ok {
		newParent = p.LoopbackNode
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.fs.failing(); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if e := n.fs.failing(); e != 0 {
		return e
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

// wrap makes a loopback file handle's writes fail on demand.
func (f *FS) wrap(fh fs.FileHandle) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	return &file{LoopbackFile: lf, fs: f}
}

// file is an open loopback file whose writes fail on demand.
type file struct {
	*fs.LoopbackFile
	fs *FS
}

// PassthroughFd is refused: the kernel would write to the backing file
// without asking this file system.
func (f *file) PassthroughFd() (int, bool) { return 0, false }

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if e := f.fs.failing(); e != 0 {
		return 0, e
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if e := f.fs.failing(); e != 0 {
		return 0, e
	}
	return f.LoopbackFile.Writev(ctx, data, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if e := f.fs.failing(); e != 0 {
		return e
	}
	return f.LoopbackFile.Fsync(ctx, flags)
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := f.fs.failing(); e != 0 {
		return e
	}
	return f.LoopbackFile.Setattr(ctx, in, out)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if e := f.fs.failing(); e != 0 {
		return e
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

// ErrNoFUSE is returned by Available when FUSE cannot be used here.
var ErrNoFUSE = errors.New("no FUSE")

// Available tells whether this machine can mount a faultfs: root, the
// FUSE device and the fuse file system in the kernel.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root", ErrNoFUSE)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoFUSE, err)
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil || !containsField(string(b), "fuse") {
		return fmt.Errorf("%w: the kernel lists no fuse file system in /proc/filesystems", ErrNoFUSE)
	}
	return nil
}

func containsField(s, word string) bool {
	for _, line := range strings.Split(s, "\n") {
		if slices.Contains(strings.Fields(line), word) {
			return true
		}
	}
	return false
}
