// Command testsummary reads `go test -json` on standard input and writes
// what plain `go test` would (the ok/FAIL line of each package, the output
// of failing tests), then the name and reason of every skipped test. It
// exits 1 when a test or a package failed. `make test` pipes through it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type key struct{ pkg, test string }

func main() {
	failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// summarize copies the package lines and failing tests' output of in to
// out, then lists the skipped tests; it reports whether anything failed.
func summarize(in io.Reader, out io.Writer) (failed bool, err error) {
	outputs := map[key][]string{}
	var skipped []key
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(out, string(line)) // not JSON: a build error, say
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output", "build-output":
			if e.Test == "" {
				if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "--- ") && e.Output != "PASS\n" {
					fmt.Fprint(out, e.Output)
				}
				continue
			}
			outputs[k] = append(outputs[k], e.Output)
		case "fail", "build-fail":
			failed = true
			if e.Test != "" {
				fmt.Fprint(out, strings.Join(outputs[k], ""))
			}
			delete(outputs, k)
		case "skip":
			if e.Test != "" {
				skipped = append(skipped, k)
				outputs[k] = []string{reason(outputs[k])}
			}
		case "pass":
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	sort.Slice(skipped, func(i, j int) bool {
		if skipped[i].pkg != skipped[j].pkg {
			return skipped[i].pkg < skipped[j].pkg
		}
		return skipped[i].test < skipped[j].test
	})
	fmt.Fprintf(out, "\n%d skipped tests\n", len(skipped))
	for _, k := range skipped {
		fmt.Fprintf(out, "SKIP %s %s: %s\n", k.pkg, k.test, outputs[k][0])
	}
	return failed, nil
}

// reason is the skip message among a test's output lines: the last line
// that is not go test's own bookkeeping.
func reason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		return l
	}
	return "(no reason given)"
}
