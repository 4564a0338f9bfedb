package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCLI runs the matchbox binary with args and env, stdin not a terminal.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run %v: %v", args, err)
	return 0, "", ""
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCLIPlanApply runs plan, apply, get and delete of the real binary
// against a running `matchbox serve`, step by step.
func TestCLIPlanApply(t *testing.T) {
	s := startServer(t, "--data-dir", t.TempDir(), "--assets-dir", "-")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"profiles/etcd.yaml":  "id: etcd\nboot:\n  kernel: /assets/vmlinuz\nignition_id: etcd.ign\n",
		"profiles/disk.json":  `{"id": "disk", "boot": {"kernel": "/k"}}`,
		"groups/node1.yaml":   "id: node1\nprofile: etcd\nselector:\n  os: installed\n  mac: 52:54:00:00:00:01\n",
		"groups/default.yaml": "id: default\nprofile: disk\n",
		"ignition/etcd.ign":   `{"ignition": {"version": "3.4.0"}}`,
	})
	endpoint := "MATCHBOX_ENDPOINT=" + s.URL
	steps := []struct {
		name    string
		files   map[string]string // written before the step ("" removes)
		args    []string
		code    int
		want    []string // lines or fragments of stdout
		notWant []string
		stderr  string
	}{
		{
			name: "plan of a new directory",
			args: []string{"plan", "-f", dir}, code: 2,
			want: []string{"  + create ignition etcd.ign\n", "  + create profile disk\n", "  + create profile etcd\n",
				"  + create group default\n", "  + create group node1\n", "\nPlan: 5 to create, 0 to update, 0 to delete.\n"},
		},
		{
			name: "apply refuses without a terminal",
			args: []string{"apply", "-f", dir}, code: 1,
			want: []string{"Plan: 5 to create"}, stderr: "stdin is not a terminal: pass --auto-approve",
		},
		{
			name: "nothing was applied",
			args: []string{"plan", "-f", dir}, code: 2, want: []string{"Plan: 5 to create, 0 to update, 0 to delete."},
		},
		{
			name: "apply",
			args: []string{"apply", "-f", dir, "--auto-approve"}, code: 0,
			want: []string{"  + create group node1\n", "Apply complete! 5 created, 0 updated, 0 deleted.\n"},
		},
		{
			name: "second plan has no changes",
			args: []string{"plan", "-f", dir}, code: 0,
			want: []string{"No changes."}, notWant: []string{"create", "update"},
		},
		{
			name:  "changed file shows the update and its fields",
			files: map[string]string{"groups/node1.yaml": "id: node1\nprofile: etcd\nselector:\n  os: wiped\n  mac: 52:54:00:00:00:01\nmetadata:\n  pool: a\n"},
			args:  []string{"plan", "-f", dir}, code: 2,
			want: []string{"  ~ update group node1\n      + metadata.pool: \"a\"\n      ~ selector.os: \"installed\" → \"wiped\"\n",
				"Plan: 0 to create, 1 to update, 0 to delete."},
			notWant: []string{"default"},
		},
		{
			name:  "prune deletes what the directory no longer holds",
			files: map[string]string{"groups/default.yaml": "", "profiles/disk.json": ""},
			args:  []string{"plan", "-f", dir, "--prune"}, code: 2,
			want: []string{"  - delete profile disk (written through the API; not in the bundle)\n", "  - delete group default (written through the API; not in the bundle)\n", "  ~ update group node1\n", "Plan: 0 to create, 1 to update, 2 to delete."},
		},
		{
			name: "apply without prune keeps what the directory no longer holds",
			args: []string{"apply", "-f", dir, "--auto-approve"}, code: 0,
			want: []string{"Apply complete! 0 created, 1 updated, 0 deleted."},
		},
		{
			name: "prune apply",
			args: []string{"apply", "-f", dir, "--prune", "--auto-approve"}, code: 0,
			want: []string{"Apply complete! 0 created, 0 updated, 2 deleted."},
		},
		{
			name:  "an invalid bundle is an error naming the file",
			files: map[string]string{"groups/twin.yaml": "id: twin\nprofile: etcd\nselector:\n  os: wiped\n  mac: 52:54:00:00:00:01\n"},
			args:  []string{"apply", "-f", dir, "--auto-approve"}, code: 1,
			stderr: `groups "node1" and "twin" have identical selectors`,
		},
		{
			name:  "get groups as a table",
			files: map[string]string{"groups/twin.yaml": ""},
			args:  []string{"get", "groups"}, code: 0,
			want: []string{"ID ", "node1", "mac=52:54:00:00:00:01,os=wiped"}, notWant: []string{"default"},
		},
		{
			name: "get one profile as YAML",
			args: []string{"get", "profiles", "etcd", "-o", "yaml"}, code: 0,
			want: []string{"id: etcd\n", "ignition_id: etcd.ign\n"},
		},
		{
			name: "get a template as JSON",
			args: []string{"get", "templates", "ignition/etcd.ign", "-o", "json"}, code: 0,
			want: []string{`"name": "etcd.ign"`},
		},
		{
			name: "delete a group",
			args: []string{"delete", "group", "node1"}, code: 0, want: []string{"deleted group node1"},
		},
		{
			name: "delete it again",
			args: []string{"delete", "group", "node1"}, code: 1, stderr: "not_found",
		},
		{
			name: "plan of one file",
			args: []string{"plan", "-f", filepath.Join(dir, "groups", "node1.yaml")}, code: 2,
			want: []string{"  + create group node1\n", "Plan: 1 to create, 0 to update, 0 to delete."},
		},
		{
			name: "prune needs a directory",
			args: []string{"plan", "--prune", "-f", filepath.Join(dir, "groups", "node1.yaml")}, code: 1,
			stderr: "--prune needs a directory",
		},
		{
			name: "apply of one file",
			args: []string{"apply", "-f", filepath.Join(dir, "groups", "node1.yaml"), "--auto-approve"}, code: 0,
			want: []string{"Apply complete! 1 created, 0 updated, 0 deleted."},
		},
		{
			name: "deleting a profile a group names leaves a dangling reference, with a warning",
			args: []string{"delete", "profile", "etcd"}, code: 0, want: []string{"deleted profile etcd"},
			stderr: `warning: dangling reference: profile "etcd" is deleted and group "node1" still names it`,
		},
		{
			name: "get warns of dangling references",
			args: []string{"get", "groups"}, code: 0, want: []string{"node1"},
			stderr: `warning: dangling reference: group "node1": profile "etcd" does not exist`,
		},
		{
			name:  "a bundle may not add a dangling reference",
			files: map[string]string{"groups/other.yaml": "id: other\nprofile: etcd\nselector:\n  os: other\n"},
			args:  []string{"plan", "-f", filepath.Join(dir, "groups", "other.yaml")}, code: 1,
			stderr: `group "other": profile "etcd" does not exist`,
		},
	}
	for _, st := range steps {
		writeFiles(t, dir, st.files)
		code, out, errOut := runCLI(t, []string{endpoint}, st.args...)
		if code != st.code {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", st.name, code, st.code, out, errOut)
		}
		for _, w := range st.want {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: stdout lacks %q:\n%s", st.name, w, out)
			}
		}
		for _, w := range st.notWant {
			if strings.Contains(out, w) {
				t.Fatalf("%s: stdout has %q:\n%s", st.name, w, out)
			}
		}
		if !strings.Contains(errOut, st.stderr) {
			t.Fatalf("%s: stderr lacks %q:\n%s", st.name, st.stderr, errOut)
		}
	}
}

// TestCLIAPITokens runs the client with tokens of both roles against a
// server with a token file.
func TestCLIAPITokens(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("reader-0123456789abcdef read\nadmin-0123456789abcdef admin\n"), 0o600)
	s := startServer(t, "--data-dir", t.TempDir(), "--assets-dir", "-", "--api-token-file", tokens)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"profiles/p.yaml": "id: p\n"})
	tests := []struct {
		name   string
		token  string
		args   []string
		code   int
		stderr string
	}{
		{"no token", "", []string{"get", "profiles"}, 1, "unauthorized"},
		{"reader plans", "reader-0123456789abcdef", []string{"plan", "-f", dir}, 2, ""},
		{"reader may not apply", "reader-0123456789abcdef", []string{"apply", "-f", dir, "--auto-approve"}, 1, "forbidden"},
		{"admin applies", "admin-0123456789abcdef", []string{"apply", "-f", dir, "--auto-approve"}, 0, ""},
		{"reader lists", "reader-0123456789abcdef", []string{"get", "profiles"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, []string{"MATCHBOX_ENDPOINT=" + s.URL, "MATCHBOX_TOKEN=" + tt.token}, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)\n%s", code, tt.code, errOut, tt.stderr, out)
			}
		})
	}
}
