package tftp

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// CleanName maps the file name of a TFTP read request to a slash-separated
// path relative to the server root, or returns an error wrapping
// ErrAccessViolation when the name must not be served.
//
// The rules, in order:
//
//   - An empty name, or one holding a NUL byte, is refused.
//   - Backslashes are path separators: PXE clients written for Windows
//     servers ask for `boot\x64\wdsnbp.com`, so `\` is read as `/` (as the
//     usual tftpd-hpa remap rule `rg \\ /` does). A file whose name really
//     holds a backslash cannot be served.
//   - Leading slashes are dropped: `/undionly.kpxe` names
//     `<root>/undionly.kpxe`, as firmware that prefixes a slash expects and as
//     tftpd-hpa in secure mode (-s) and dnsmasq do. An absolute name can
//     therefore never reach outside the root: `/etc/passwd` is looked up as
//     `<root>/etc/passwd`.
//   - Any `..` segment is refused, even one that would stay inside the root
//     after cleaning (`a/../b`): no legitimate boot file name needs one.
//   - `.` segments, repeated and trailing slashes are cleaned away; a name that
//     cleans to the root itself is refused.
//
// The result always satisfies fs.ValidPath. Symbolic links are not looked at
// here: the server opens the result through an os.Root, which refuses links
// that lead outside the root.
func CleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty file name", ErrAccessViolation)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte in file name %q", ErrAccessViolation, name)
	}
	n := strings.ReplaceAll(name, `\`, "/")
	n = strings.TrimLeft(n, "/")
	for seg := range strings.SplitSeq(n, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: %q has a .. segment", ErrAccessViolation, name)
		}
	}
	n = path.Clean(n)
	if n == "." || n == "" || !fs.ValidPath(n) {
		return "", fmt.Errorf("%w: %q names no file under the root", ErrAccessViolation, name)
	}
	return n, nil
}
