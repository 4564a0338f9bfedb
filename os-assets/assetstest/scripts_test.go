package assetstest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"matchbox/internal/needs"
)

// scriptPath returns the path of a script of os-assets/.
func scriptPath(t *testing.T, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	p := filepath.Join(filepath.Dir(file), "..", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("script: %v", err)
	}
	return p
}

// requireTools skips the test when a tool is not installed.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			needs.Skipf(t, "%s is not installed (Debian packages: bash curl coreutils gnupg gpgv python3 jq)", tool)
		}
	}
}

// request is one request the fake release server answered.
type request struct {
	Path  string
	Range string
}

// releaseServer serves a directory tree over HTTP (with Range support) and
// logs every request.
type releaseServer struct {
	*httptest.Server
	root string
	mu   sync.Mutex
	log  []request
}

func newReleaseServer(t *testing.T) *releaseServer {
	t.Helper()
	s := &releaseServer{root: t.TempDir()}
	files := http.FileServer(http.Dir(s.root))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.log = append(s.log, request{Path: r.URL.Path, Range: r.Header.Get("Range")})
		s.mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// write creates a file of the served tree.
func (s *releaseServer) write(t *testing.T, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(s.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// requests returns and clears the request log.
func (s *releaseServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.log
	s.log = nil
	return out
}

// paths returns the paths of reqs.
func paths(reqs []request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Path
	}
	return out
}

// randomBytes returns n random bytes: a stand-in for a kernel or initramfs.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// result is the outcome of a script run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs a script with bash and the extra environment env (which replaces
// variables of the same name).
func run(t *testing.T, script string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	var keep []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "FLATCAR_") || strings.HasPrefix(name, "FCOS_") || name == "MATCHBOX_JSON_TOOL" {
			continue
		}
		keep = append(keep, kv)
	}
	cmd.Env = append(keep, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s: %v", script, err)
		}
		res.code = ee.ExitCode()
	}
	return res
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// assertFile fails unless the file at path holds want.
func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("installed file: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d bytes served", path, len(got), len(want))
	}
}

// assertAbsent fails if any of paths exists.
func assertAbsent(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists, want it deleted or never written", p)
		}
	}
}

// noPartFiles fails if a .part file is left under dir.
func noPartFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".part") {
			t.Errorf("partial download left behind: %s", p)
		}
		return nil
	})
}

// signer is a GPG key generated for a test, in its own GNUPGHOME.
type signer struct {
	home   string
	pubKey string // armored public key file
}

// newSigner generates a signing key with gpg --quick-gen-key.
func newSigner(t *testing.T, name string) *signer {
	t.Helper()
	// gpg-agent's socket path must stay short: not under t.TempDir().
	home, err := os.MkdirTemp("", "mbgpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &signer{home: home, pubKey: filepath.Join(t.TempDir(), name+".asc")}
	s.gpg(t, "--quick-gen-key", name+" <"+name+"@example.invalid>", "ed25519", "sign", "never")
	pub := s.gpg(t, "--armor", "--export")
	if !bytes.Contains(pub, []byte("BEGIN PGP PUBLIC KEY BLOCK")) {
		t.Fatalf("gpg --export gave no armored key: %q", pub)
	}
	if err := os.WriteFile(s.pubKey, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *signer) gpg(t *testing.T, args ...string) []byte {
	t.Helper()
	full := append([]string{"--batch", "--homedir", s.home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)
	cmd := exec.Command("gpg", full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// sign writes the detached binary signature of file to file.sig.
func (s *signer) sign(t *testing.T, file string) {
	t.Helper()
	s.gpg(t, "--yes", "--detach-sign", "--output", file+".sig", file)
}

// TestGetFlatcar runs get-flatcar against a fake Flatcar release server.
func TestGetFlatcar(t *testing.T) {
	requireTools(t, "bash", "curl", "gpg", "gpgv", "gpgconf")
	script := scriptPath(t, "get-flatcar")
	signerA := newSigner(t, "flatcar-test")
	signerB := newSigner(t, "someone-else")

	srv := newReleaseServer(t)
	const kernel, initrd = "flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"
	good := map[string][]byte{kernel: randomBytes(t, 150<<10), initrd: randomBytes(t, 400<<10)}
	for name, data := range good {
		signerA.sign(t, srv.write(t, "stable/amd64-usr/1.2.3/"+name, data))
	}
	srv.write(t, "stable/amd64-usr/current/version.txt", []byte("FLATCAR_BUILD=1\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=3\nFLATCAR_VERSION=1.2.3\nFLATCAR_VERSION_ID=1.2.3\n"))
	// 2.0.0: the initramfs was altered after it was signed.
	signerA.sign(t, srv.write(t, "stable/amd64-usr/2.0.0/"+kernel, good[kernel]))
	tampered := srv.write(t, "stable/amd64-usr/2.0.0/"+initrd, good[initrd])
	signerA.sign(t, tampered)
	bad := bytes.Clone(good[initrd])
	bad[len(bad)/2] ^= 0xff
	srv.write(t, "stable/amd64-usr/2.0.0/"+initrd, bad)

	env := []string{"FLATCAR_BASE_URL=" + srv.URL + "/stable"}
	withKey := func(s *signer) []string { return append(slices.Clone(env), "FLATCAR_KEYRING="+s.pubKey) }

	t.Run("installs verified files", func(t *testing.T) {
		dest := t.TempDir()
		srv.requests()
		res := run(t, script, env, "--keyring", signerA.pubKey, "stable", "1.2.3", dest)
		if res.code != 0 {
			t.Fatalf("want success:\n%v", res)
		}
		dir := filepath.Join(dest, "flatcar", "1.2.3")
		for name, data := range good {
			assertFile(t, filepath.Join(dir, name), data)
			if _, err := os.Stat(filepath.Join(dir, name+".sig")); err != nil {
				t.Errorf("signature not kept: %v", err)
			}
		}
		if got := strings.TrimSpace(res.stdout); got != dir {
			t.Errorf("stdout %q, want the release directory %q", got, dir)
		}
		noPartFiles(t, dest)
		if reqs := srv.requests(); len(reqs) != 4 {
			t.Errorf("requests %v, want the two files and their signatures", paths(reqs))
		}

		t.Run("skips verified files", func(t *testing.T) {
			res := run(t, script, withKey(signerA), "stable", "1.2.3", dest)
			if res.code != 0 {
				t.Fatalf("want success:\n%v", res)
			}
			if reqs := srv.requests(); len(reqs) != 0 {
				t.Errorf("fetched %v, want nothing: the files are present and verified", paths(reqs))
			}
			if !strings.Contains(res.stderr, "present and verified") {
				t.Errorf("stderr does not say the files were skipped:\n%v", res)
			}
		})

		t.Run("refetches a corrupted local file", func(t *testing.T) {
			local := filepath.Join(dir, initrd)
			if err := os.WriteFile(local, []byte("corrupted"), 0o644); err != nil {
				t.Fatal(err)
			}
			res := run(t, script, withKey(signerA), "stable", "1.2.3", dest)
			if res.code != 0 {
				t.Fatalf("want success:\n%v", res)
			}
			assertFile(t, local, good[initrd])
			got := paths(srv.requests())
			if !slices.Contains(got, "/stable/amd64-usr/1.2.3/"+initrd) || slices.Contains(got, "/stable/amd64-usr/1.2.3/"+kernel) {
				t.Errorf("requests %v, want the initramfs fetched again and not the kernel", got)
			}
		})
	})

	t.Run("resumes a partial download", func(t *testing.T) {
		dest := t.TempDir()
		dir := filepath.Join(dest, "flatcar", "1.2.3")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		half := len(good[initrd]) / 2
		if err := os.WriteFile(filepath.Join(dir, initrd+".part"), good[initrd][:half], 0o644); err != nil {
			t.Fatal(err)
		}
		// A complete .part (cut before it was renamed) cannot be resumed
		// (416): it is fetched again.
		if err := os.WriteFile(filepath.Join(dir, kernel+".part"), good[kernel], 0o644); err != nil {
			t.Fatal(err)
		}
		srv.requests()
		res := run(t, script, withKey(signerA), "stable", "1.2.3", dest)
		if res.code != 0 {
			t.Fatalf("want success:\n%v", res)
		}
		assertFile(t, filepath.Join(dir, initrd), good[initrd])
		assertFile(t, filepath.Join(dir, kernel), good[kernel])
		noPartFiles(t, dest)
		want := request{Path: "/stable/amd64-usr/1.2.3/" + initrd, Range: fmt.Sprintf("bytes=%d-", half)}
		if reqs := srv.requests(); !slices.Contains(reqs, want) {
			t.Errorf("requests %v, want %v", reqs, want)
		}
	})

	t.Run("resolves current", func(t *testing.T) {
		dest := t.TempDir()
		res := run(t, script, withKey(signerA), "stable", "current", dest)
		if res.code != 0 {
			t.Fatalf("want success:\n%v", res)
		}
		link, err := os.Readlink(filepath.Join(dest, "flatcar", "current"))
		if err != nil || link != "1.2.3" {
			t.Fatalf("flatcar/current links to %q (%v), want 1.2.3", link, err)
		}
		assertFile(t, filepath.Join(dest, "flatcar", "current", kernel), good[kernel])
	})

	t.Run("refuses and deletes a tampered file", func(t *testing.T) {
		dest := t.TempDir()
		res := run(t, script, withKey(signerA), "stable", "2.0.0", dest)
		if res.code == 0 || !strings.Contains(res.stderr, initrd+": bad signature") {
			t.Fatalf("want a bad signature failure:\n%v", res)
		}
		dir := filepath.Join(dest, "flatcar", "2.0.0")
		assertAbsent(t, filepath.Join(dir, initrd), filepath.Join(dir, initrd+".sig"))
		noPartFiles(t, dest)
	})

	t.Run("refuses a signature by another key", func(t *testing.T) {
		dest := t.TempDir()
		res := run(t, script, withKey(signerB), "stable", "1.2.3", dest)
		if res.code == 0 || !strings.Contains(res.stderr, "bad signature") {
			t.Fatalf("want a bad signature failure:\n%v", res)
		}
		dir := filepath.Join(dest, "flatcar", "1.2.3")
		assertAbsent(t, filepath.Join(dir, kernel), filepath.Join(dir, initrd), filepath.Join(dir, kernel+".sig"))
	})

	t.Run("dry run fetches nothing", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "assets")
		srv.requests()
		for _, version := range []string{"1.2.3", "current"} {
			res := run(t, script, env, "--dry-run", "stable", version, dest)
			if res.code != 0 {
				t.Fatalf("want success:\n%v", res)
			}
			if !strings.Contains(res.stdout, srv.URL+"/stable/amd64-usr/") || !strings.Contains(res.stdout, kernel+".sig") {
				t.Errorf("dry run does not show the URLs:\n%v", res)
			}
		}
		if reqs := srv.requests(); len(reqs) != 0 {
			t.Errorf("dry run fetched %v", paths(reqs))
		}
		assertAbsent(t, dest)
	})

	t.Run("requires a keyring", func(t *testing.T) {
		dest := t.TempDir()
		res := run(t, script, env, "stable", "1.2.3", dest)
		if res.code == 0 || !strings.Contains(res.stderr, "--keyring") {
			t.Fatalf("want a failure naming --keyring:\n%v", res)
		}
	})

	t.Run("rejects bad arguments", func(t *testing.T) {
		for _, args := range [][]string{{"nightly"}, {"stable", "1.2"}, {"--bogus"}} {
			if res := run(t, script, withKey(signerA), args...); res.code == 0 {
				t.Errorf("%v: want a failure:\n%v", args, res)
			}
		}
	})
}

// fcosRelease is a fake Fedora CoreOS release on the release server.
type fcosRelease struct {
	version string
	files   map[string][]byte // by file name
	sums    map[string]string // by artifact: kernel, initramfs, rootfs
	names   map[string]string // file name by artifact
}

// addFCOSRelease writes a release's artifacts and meta.json under
// builds/VERSION/x86_64/ and returns it. corrupt names an artifact whose
// served bytes differ from its sha256 (empty for none).
func addFCOSRelease(t *testing.T, srv *releaseServer, version, corrupt string) *fcosRelease {
	t.Helper()
	r := &fcosRelease{version: version, files: map[string][]byte{}, sums: map[string]string{}, names: map[string]string{
		"kernel":    "fedora-coreos-" + version + "-live-kernel-x86_64",
		"initramfs": "fedora-coreos-" + version + "-live-initramfs.x86_64.img",
		"rootfs":    "fedora-coreos-" + version + "-live-rootfs.x86_64.img",
	}}
	images := map[string]any{}
	for _, art := range []string{"kernel", "initramfs", "rootfs"} {
		data := randomBytes(t, 64<<10)
		sum := sha256.Sum256(data)
		r.sums[art] = hex.EncodeToString(sum[:])
		r.files[r.names[art]] = data
		served := data
		if art == corrupt {
			served = bytes.Clone(data)
			served[0] ^= 0xff
		}
		srv.write(t, "builds/"+version+"/x86_64/"+r.names[art], served)
		images["live-"+art] = map[string]any{"path": r.names[art], "sha256": r.sums[art], "size": len(data)}
	}
	meta, err := json.Marshal(map[string]any{"buildid": version, "name": "fedora-coreos", "images": images})
	if err != nil {
		t.Fatal(err)
	}
	srv.write(t, "builds/"+version+"/x86_64/meta.json", meta)
	return r
}

// writeStream writes streams/NAME.json announcing release r.
func writeStream(t *testing.T, srv *releaseServer, name string, r *fcosRelease) {
	t.Helper()
	pxe := map[string]any{}
	for art, file := range r.names {
		loc := srv.URL + "/builds/" + r.version + "/x86_64/" + file
		pxe[art] = map[string]any{"location": loc, "signature": loc + ".sig", "sha256": r.sums[art]}
	}
	doc := map[string]any{
		"stream":   name,
		"metadata": map[string]any{"last-modified": "2025-01-01T00:00:00Z"},
		"architectures": map[string]any{"x86_64": map[string]any{"artifacts": map[string]any{
			"metal": map[string]any{"release": r.version, "formats": map[string]any{"pxe": pxe}},
		}}},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	srv.write(t, "streams/"+name+".json", data)
}

// TestGetFedoraCoreOS runs get-fedora-coreos against a fake release server,
// reading JSON with each available tool.
func TestGetFedoraCoreOS(t *testing.T) {
	requireTools(t, "bash", "curl", "sha256sum")
	script := scriptPath(t, "get-fedora-coreos")
	srv := newReleaseServer(t)
	current := addFCOSRelease(t, srv, "42.20250101.3.0", "")
	older := addFCOSRelease(t, srv, "41.20241201.3.0", "")
	tampered := addFCOSRelease(t, srv, "42.20250202.2.0", "rootfs")
	writeStream(t, srv, "stable", current)
	writeStream(t, srv, "testing", tampered)

	ran := false
	for _, tool := range []string{"python3", "jq"} {
		t.Run(tool, func(t *testing.T) {
			if _, err := exec.LookPath(tool); err != nil {
				needs.Skipf(t, "%s is not installed", tool)
			}
			ran = true
			env := func(stream string) []string {
				return []string{
					"MATCHBOX_JSON_TOOL=" + tool,
					"FCOS_STREAM_URL=" + srv.URL + "/streams/" + stream + ".json",
					"FCOS_BUILDS_URL=" + srv.URL + "/builds",
				}
			}

			t.Run("installs the stream's release", func(t *testing.T) {
				dest := t.TempDir()
				srv.requests()
				res := run(t, script, env("stable"), "stable", "current", dest)
				if res.code != 0 {
					t.Fatalf("want success:\n%v", res)
				}
				if got := strings.TrimSpace(res.stdout); got != current.version {
					t.Errorf("stdout %q, want the release %s", got, current.version)
				}
				for name, data := range current.files {
					assertFile(t, filepath.Join(dest, "fedora-coreos", name), data)
				}
				noPartFiles(t, dest)
				if reqs := srv.requests(); len(reqs) != 4 {
					t.Errorf("requests %v, want the stream and three artifacts", paths(reqs))
				}

				t.Run("skips verified files", func(t *testing.T) {
					res := run(t, script, env("stable"), "stable", "current", dest)
					if res.code != 0 {
						t.Fatalf("want success:\n%v", res)
					}
					if got := paths(srv.requests()); !slices.Equal(got, []string{"/streams/stable.json"}) {
						t.Errorf("requests %v, want only the stream metadata", got)
					}
				})
			})

			t.Run("installs a given version from its meta.json", func(t *testing.T) {
				dest := t.TempDir()
				res := run(t, script, env("stable"), "stable", older.version, dest)
				if res.code != 0 {
					t.Fatalf("want success:\n%v", res)
				}
				for name, data := range older.files {
					assertFile(t, filepath.Join(dest, "fedora-coreos", name), data)
				}
			})

			t.Run("resumes a partial download", func(t *testing.T) {
				dest := t.TempDir()
				dir := filepath.Join(dest, "fedora-coreos")
				name := current.names["rootfs"]
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name+".part"), current.files[name][:1000], 0o644); err != nil {
					t.Fatal(err)
				}
				srv.requests()
				res := run(t, script, env("stable"), "stable", "current", dest)
				if res.code != 0 {
					t.Fatalf("want success:\n%v", res)
				}
				assertFile(t, filepath.Join(dir, name), current.files[name])
				want := request{Path: "/builds/" + current.version + "/x86_64/" + name, Range: "bytes=1000-"}
				if reqs := srv.requests(); !slices.Contains(reqs, want) {
					t.Errorf("requests %v, want %v", reqs, want)
				}
			})

			t.Run("refuses and deletes a file with a wrong sha256", func(t *testing.T) {
				dest := t.TempDir()
				res := run(t, script, env("testing"), "testing", "current", dest)
				rootfs := tampered.names["rootfs"]
				if res.code == 0 || !strings.Contains(res.stderr, rootfs+": sha256 does not match") {
					t.Fatalf("want a sha256 failure:\n%v", res)
				}
				assertAbsent(t, filepath.Join(dest, "fedora-coreos", rootfs))
				noPartFiles(t, dest)
			})

			t.Run("refuses metadata of another release", func(t *testing.T) {
				// The build directory of "older" renamed: its meta.json names another build.
				meta, err := os.ReadFile(filepath.Join(srv.root, "builds", older.version, "x86_64", "meta.json"))
				if err != nil {
					t.Fatal(err)
				}
				srv.write(t, "builds/40.20240101.3.0/x86_64/meta.json", meta)
				res := run(t, script, env("stable"), "stable", "40.20240101.3.0", t.TempDir())
				if res.code == 0 || !strings.Contains(res.stderr, "not 40.20240101.3.0") {
					t.Fatalf("want a release mismatch failure:\n%v", res)
				}
			})

			t.Run("dry run fetches nothing", func(t *testing.T) {
				dest := filepath.Join(t.TempDir(), "assets")
				srv.requests()
				for _, version := range []string{"current", older.version} {
					res := run(t, script, env("stable"), "--dry-run", "stable", version, dest)
					if res.code != 0 || !strings.Contains(res.stdout, srv.URL) {
						t.Fatalf("want success showing the URLs:\n%v", res)
					}
				}
				if reqs := srv.requests(); len(reqs) != 0 {
					t.Errorf("dry run fetched %v", paths(reqs))
				}
				assertAbsent(t, dest)
			})
		})
	}
	if !ran {
		needs.Skip(t, "neither python3 nor jq is installed")
	}
}
