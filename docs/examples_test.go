package docs_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"matchbox/internal/needs"
)

// notRunMark, on the line before a ```sh fence, says why the example does
// not run against the test's server.
const notRunMark = "<!-- not-run:"

// documentedURL is the server address the examples name; it is rewritten
// to the test server's.
const documentedURL = "http://127.0.0.1:8080"

// example is one ```sh block of a document.
type example struct {
	doc    string // path relative to the repository root
	line   int    // line of the opening fence
	script string
	notRun string // the reason, when the block is marked not-run
}

// parseExamples returns the ```sh blocks of a Markdown document, in order.
func parseExamples(doc string, text []byte) ([]example, error) {
	var out []example
	var cur *example
	prev := ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.script += line + "\n"
		case line == "```sh":
			cur = &example{doc: doc, line: n}
			if r, ok := strings.CutPrefix(strings.TrimSpace(prev), notRunMark); ok {
				r, ok = strings.CutSuffix(r, "-->")
				if r = strings.TrimSpace(r); !ok || r == "" {
					return nil, fmt.Errorf("%s:%d: a not-run mark needs a reason and must end with -->", doc, n-1)
				}
				cur.notRun = r
			}
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: ```sh block is not closed", doc, cur.line)
	}
	return out, sc.Err()
}

func TestParseExamples(t *testing.T) {
	doc := "# T\n\n```sh\necho a\n```\n\n<!-- not-run: boots hardware -->\n\n```sh\nreboot\n```\n\n```\nnot sh\n```\n"
	got, err := parseExamples("t.md", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []example{
		{doc: "t.md", line: 3, script: "echo a\n"},
		{doc: "t.md", line: 9, script: "reboot\n", notRun: "boots hardware"},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(example{})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, bad := range []string{"<!-- not-run: -->\n```sh\nx\n```\n", "<!-- not-run: why\n```sh\nx\n```\n", "```sh\nx\n"} {
		if _, err := parseExamples("t.md", []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestExamples runs every ```sh example of README.md and docs/*.md, in
// order per document, with `sh -e` against a live `matchbox serve` (the
// built binary, a data directory holding the shipped defaults, a fresh
// database per document, a loopback port in place of 127.0.0.1:8080).
// `matchbox` in the examples is the built binary; `curl` fails on an
// HTTP error (--fail-with-body), so that an example answered 4xx or 5xx
// fails. Blocks marked <!-- not-run: reason --> are listed, not run.
func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs matchbox serve: not in -short")
	}
	for _, tool := range []string{"sh", "curl", "jq", "openssl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			needs.Skipf(t, "the examples need %s: %v", tool, err)
		}
	}
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(docs)
	paths := []string{"../README.md"}
	for _, d := range docs {
		paths = append(paths, d)
	}
	var all [][]example
	var notRun []string
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(filepath.ToSlash(filepath.Join("docs", p)), "docs/../")
		exs, err := parseExamples(name, text)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, exs)
		for _, ex := range exs {
			if ex.notRun != "" {
				notRun = append(notRun, fmt.Sprintf("%s:%d: %s", ex.doc, ex.line, ex.notRun))
			}
		}
	}
	t.Logf("%d examples not run:\n%s", len(notRun), strings.Join(notRun, "\n"))

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "matchbox"), "./cmd/matchbox")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build matchbox: %v\n%s", err, out)
	}
	realCurl, _ := exec.LookPath("curl")
	wrapper := "#!/bin/sh\n# An HTTP error fails the example, its body shown.\nexec " + realCurl + " --fail-with-body -sS \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "curl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, exs := range all {
		runnable := 0
		for _, ex := range exs {
			if ex.notRun == "" {
				runnable++
			}
		}
		if runnable == 0 {
			continue
		}
		t.Run(exs[0].doc, func(t *testing.T) {
			url := startServer(t, filepath.Join(bin, "matchbox"))
			work := t.TempDir()
			env := append(os.Environ(),
				"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				"MATCHBOX_ENDPOINT="+url, "MATCHBOX_TOKEN=", "HOME="+work)
			for _, ex := range exs {
				if ex.notRun != "" {
					continue
				}
				script := strings.ReplaceAll(ex.script, documentedURL, url)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				cmd := exec.CommandContext(ctx, "sh", "-e", "-c", script)
				cmd.Dir, cmd.Env = work, env
				out, err := cmd.CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("%s:%d: example failed: %v\n--- example\n%s--- output\n%s", ex.doc, ex.line, err, ex.script, out)
				}
				t.Logf("%s:%d: ok", ex.doc, ex.line)
			}
		})
	}
}

// startServer starts `matchbox serve` on a loopback port with the
// repository's shipped defaults (profiles/, groups/) as its data
// directory and its database, agent key and secret key in a temporary
// directory, as `make run` does; it returns its base URL.
func startServer(t *testing.T, matchbox string) string {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, sub := range []string{"profiles", "groups"} {
		if err := os.CopyFS(filepath.Join(data, sub), os.DirFS(filepath.Join("..", sub))); err != nil {
			t.Fatalf("copy the shipped %s: %v", sub, err)
		}
	}
	key := filepath.Join(dir, "secret.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log bytes.Buffer
	cmd := exec.Command(matchbox, "serve", "--data-dir", data, "--db", filepath.Join(dir, "matchbox.db"),
		"--agent-key-file", filepath.Join(dir, "agent.key"), "--assets-dir", "-",
		"--secret-key-file", key, "--http-addr", addr, "--bmc-retries", "0", "--bmc-timeout", "2s")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("matchbox serve exited: %v\n%s", err, log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("matchbox serve did not answer /healthz within 30s:\n%s", log.String())
		}
	}
}
