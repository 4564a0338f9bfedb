package tftp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/internal/needs"
)

func TestCleanName(t *testing.T) {
	cases := []struct {
		in, want string // want "" means refused
	}{
		{"undionly.kpxe", "undionly.kpxe"},
		{"/undionly.kpxe", "undionly.kpxe"},
		{"///undionly.kpxe", "undionly.kpxe"},
		{"./undionly.kpxe", "undionly.kpxe"},
		{"a/./b//c/", "a/b/c"},
		{`boot\x64\wdsnbp.com`, "boot/x64/wdsnbp.com"},
		{`\boot\bcd`, "boot/bcd"},
		{"/etc/passwd", "etc/passwd"},
		{"C:/x", "C:/x"},
		{"...", "..."},
		{"..a", "..a"},
		{"a..", "a.."},
		{"", ""},
		{"/", ""},
		{".", ""},
		{"./", ""},
		{"..", ""},
		{"../x", ""},
		{"a/../b", ""},
		{"a/..", ""},
		{`..\x`, ""},
		{`a\..\..\x`, ""},
		{"/../etc/passwd", ""},
		{"a\x00b", ""},
	}
	for _, c := range cases {
		got, err := CleanName(c.in)
		if c.want == "" {
			if err == nil || !errors.Is(err, ErrAccessViolation) {
				t.Errorf("CleanName(%q) = %q, %v; want ErrAccessViolation", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzCleanName: whatever the name, the result is a valid relative path that
// stays under any root.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "/undionly.kpxe", "../etc/passwd", `..\..\x`,
		"a/../../b", "/", ".", "a//b/./c", "\x00", "....//", `\\server\share`, "a/.../b"} {
		f.Add(s)
	}
	const root = "/srv/tftp"
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := CleanName(name)
		if err != nil {
			if rel != "" {
				t.Fatalf("CleanName(%q) returned %q with error %v", name, rel, err)
			}
			if !errors.Is(err, ErrAccessViolation) {
				t.Fatalf("CleanName(%q): error %v does not wrap ErrAccessViolation", name, err)
			}
			return
		}
		if !fs.ValidPath(rel) || rel == "." {
			t.Fatalf("CleanName(%q) = %q: not a valid relative path", name, rel)
		}
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." {
				t.Fatalf("CleanName(%q) = %q has ..", name, rel)
			}
		}
		if strings.ContainsRune(rel, '\\') || strings.IndexByte(rel, 0) >= 0 {
			t.Fatalf("CleanName(%q) = %q holds a backslash or NUL", name, rel)
		}
		joined := filepath.Join(root, filepath.FromSlash(rel))
		if !strings.HasPrefix(joined, root+string(filepath.Separator)) {
			t.Fatalf("CleanName(%q) = %q joins to %q, outside %s", name, rel, joined, root)
		}
	})
}

// FuzzResolve runs the server's whole lookup (CleanName and the os.Root
// open) on a root full of symbolic links, some pointing outside: any file it
// opens really lies under the root.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "link", "escape-rel", "escape-abs", "etcdir/passwd",
		"outdir/secret", "sub/up/secret", "sub/file", "/etc/passwd", "../outside/secret", "loop",
		`sub\file`, "sub/up/../outside/secret"} {
		f.Add(s)
	}
	base := f.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(root, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	write := func(p, content string) {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, p); err != nil {
			f.Fatal(err)
		}
	}
	write(filepath.Join(root, "undionly.kpxe"), "inside")
	write(filepath.Join(root, "sub", "file"), "inside")
	write(filepath.Join(outside, "secret"), "OUTSIDE")
	link("undionly.kpxe", filepath.Join(root, "link"))
	link("../outside/secret", filepath.Join(root, "escape-rel"))
	link(filepath.Join(outside, "secret"), filepath.Join(root, "escape-abs"))
	link("/etc", filepath.Join(root, "etcdir"))
	link("../outside", filepath.Join(root, "outdir"))
	link("../../outside", filepath.Join(root, "sub", "up"))
	link("loop", filepath.Join(root, "loop"))

	srv, err := New(Config{Root: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, _, path, err := srv.resolve(name)
		if err != nil {
			if !errors.Is(err, ErrAccessViolation) && !errors.Is(err, ErrNotFound) {
				t.Fatalf("resolve(%q): error %v wraps neither sentinel", name, err)
			}
			return
		}
		defer file.Close()
		if !strings.HasPrefix(path, root+string(filepath.Separator)) {
			t.Fatalf("resolve(%q) path %q outside root", name, path)
		}
		real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", file.Fd()))
		if err != nil {
			needs.Skip(t, "no /proc/self/fd")
		}
		if !strings.HasPrefix(real, realRoot+string(filepath.Separator)) {
			t.Fatalf("resolve(%q) opened %q, outside the root %q", name, real, realRoot)
		}
		b, _ := io.ReadAll(file)
		if string(b) != "inside" {
			t.Fatalf("resolve(%q) read %q", name, b)
		}
	})
}
