package docs_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// flagRE matches a flag line of a command's --help: the long name.
var flagRE = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// commandRE matches a subcommand line of "Available Commands:".
var commandRE = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s`)

// listingRE finds, on the line before a plain ``` block, the command whose
// --help the block claims to list.
var listingRE = regexp.MustCompile("`matchbox ((?:[a-z-]+ )*)--help`")

// undocumentedCommands are left out of the flag check: cobra's own
// commands, whose flags are cobra's.
var undocumentedCommands = map[string]string{"completion": "cobra's shell completion", "help": "cobra's help"}

// helpOf runs bin with args and --help.
func helpOf(t *testing.T, bin string, args []string) string {
	t.Helper()
	out, err := exec.Command(bin, append(append([]string{}, args...), "--help")...).Output()
	if err != nil {
		t.Fatalf("matchbox %s --help: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// section returns the lines of a help's section (title included) up to the
// first blank line, each ending in a newline; "" when there is none.
func section(help, title string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case l == title:
			in = true
		case in && l == "":
			return b.String()
		}
		if in {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestFlagsDocumented: every flag of every command's --help (but --help)
// is named as --FLAG somewhere in docs/*.md, and a ``` block that a line
// introduces as the output of `matchbox CMD --help` is its Flags section
// byte for byte, so that adding, renaming or rewording a flag fails until
// the docs follow.
func TestFlagsDocumented(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "matchbox")
	build := exec.Command("go", "build", "-o", bin, "./cmd/matchbox")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build matchbox: %v\n%s", err, out)
	}
	helps := map[string]string{} // "serve", "machine bmc set", ... ("" the root)
	var walk func(args []string)
	walk = func(args []string) {
		help := helpOf(t, bin, args)
		helps[strings.Join(args, " ")] = help
		for _, l := range strings.Split(section(help, "Available Commands:"), "\n")[1:] {
			if m := commandRE.FindStringSubmatch(l); m != nil {
				if _, skip := undocumentedCommands[m[1]]; skip && len(args) == 0 {
					continue
				}
				walk(append(append([]string{}, args...), m[1]))
			}
		}
	}
	walk(nil)
	if _, ok := helps["serve"]; !ok {
		t.Fatalf("no serve command found in the help: %v", helps)
	}

	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	listings := 0
	for _, d := range docs {
		text, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(text)
		all.WriteString("\n")
		// Listings of a --help: compare them with the help.
		sc := bufio.NewScanner(strings.NewReader(string(text)))
		prev, cmd, start := "", "", 0
		var block *strings.Builder
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case block != nil && strings.HasPrefix(line, "```"):
				help, ok := helps[cmd]
				switch {
				case !ok:
					t.Errorf("docs/%s:%d: lists `matchbox %s--help`, which is no command", d, start, cmd)
				default:
					if want := section(help, "Flags:"); block.String() != want {
						t.Errorf("docs/%s:%d: the listing of `matchbox %s --help` is not its output; replace it with:\n%s", d, start, cmd, want)
					}
				}
				listings++
				block = nil
			case block != nil:
				block.WriteString(line + "\n")
			case line == "```":
				if m := listingRE.FindStringSubmatch(prev); m != nil {
					cmd, start, block = strings.TrimSpace(m[1]), n, &strings.Builder{}
				}
			}
			if strings.TrimSpace(line) != "" {
				prev = line
			}
		}
	}
	if listings == 0 {
		t.Error("no --help listing found in docs/*.md (operations.md lists serve's)")
	}

	text := all.String()
	cmds := make([]string, 0, len(helps))
	for cmd := range helps {
		cmds = append(cmds, cmd)
	}
	sort.Strings(cmds)
	for _, cmd := range cmds {
		help := helps[cmd]
		for _, sec := range []string{"Flags:", "Global Flags:"} {
			for _, l := range strings.Split(section(help, sec), "\n") {
				m := flagRE.FindStringSubmatch(l)
				if m == nil || m[1] == "help" {
					continue
				}
				if !regexp.MustCompile(`--` + regexp.QuoteMeta(m[1]) + `([^a-z0-9-]|$)`).MatchString(text) {
					t.Errorf("`matchbox %s` flag --%s is documented nowhere in docs/*.md", cmd, m[1])
				}
			}
		}
	}
}
