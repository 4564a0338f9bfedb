package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIAudit runs the real server and CLI: the import at start, an API
// delete by a named token and a token file reload are each an audit
// record and an INFO log line, listed by matchbox audit with its filters.
func TestCLIAudit(t *testing.T) {
	dir := t.TempDir()
	const adminTok, readTok = "audit-admin-token-0123", "audit-read-token-45678"
	writeFiles(t, dir, map[string]string{
		"data/profiles/web.json": `{"id":"web","boot":{"kernel":"/k"}}`,
		"data/profiles/db.json":  `{"id":"db","boot":{"kernel":"/k"}}`,
		"tokens":                 adminTok + " admin alice\n" + readTok + " read\n",
	})
	s := startServer(t, "--data-dir", filepath.Join(dir, "data"), "--assets-dir", "-",
		"--agent-key-file", filepath.Join(dir, "agent.key"), "--api-token-file", filepath.Join(dir, "tokens"))
	env := []string{"MATCHBOX_ENDPOINT=" + s.URL}

	if code, out, errOut := runCLI(t, env, "delete", "profile", "web", "--token", adminTok); code != 0 {
		t.Fatalf("delete: exit %d\n%s%s", code, out, errOut)
	}
	// A refused delete (stale version) records nothing.
	if code, _, _ := runCLI(t, env, "delete", "profile", "db", "--if-version", "7", "--token", adminTok); code == 0 {
		t.Fatal("a stale delete succeeded")
	}
	// A reload that gives the unnamed token a name and another role.
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(adminTok+" admin alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Logs(), "action=token-remove") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	steps := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{
			name: "one object",
			args: []string{"audit", "--object", "profile/web"},
			want: []string{"SEQ", "ACTOR", "ACTION", "OBJECT", "VERSION", "data-dir", "create", "profile/web", "-->1", "alice", "delete", "1->-"},
		},
		{
			name:    "one actor",
			args:    []string{"audit", "--actor", "alice"},
			want:    []string{"alice", "delete", "profile/web"},
			notWant: []string{"data-dir", "profile/db"},
		},
		{
			name: "the token file's reload",
			args: []string{"audit", "--object", "token", "--since", "1h", "-o", "json"},
			want: []string{`"actor": "token-file"`, `"action": "token-remove"`, `"kind": "token"`, `"id": "token-`, `"detail": "role read"`},
		},
		{
			name:    "since the future",
			args:    []string{"audit", "--since", "2999-01-01T00:00:00Z"},
			want:    []string{"SEQ"},
			notWant: []string{"profile/"},
		},
	}
	for _, st := range steps {
		code, stdout, stderr := runCLI(t, env, append(st.args, "--token", readTok)...)
		if code == 0 {
			t.Fatalf("%s: a token removed by the reload still reads the audit trail", st.name)
		}
		code, stdout, stderr = runCLI(t, env, append(st.args, "--token", adminTok)...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", st.name, code, stdout, stderr)
		}
		for _, w := range st.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: stdout lacks %q:\n%s", st.name, w, stdout)
			}
		}
		for _, w := range st.notWant {
			if strings.Contains(stdout, w) {
				t.Errorf("%s: stdout has %q:\n%s", st.name, w, stdout)
			}
		}
	}
	var auditLines []string
	for _, l := range strings.Split(s.Logs(), "\n") {
		if strings.Contains(l, "msg=audit ") {
			auditLines = append(auditLines, l)
		}
	}
	wantLines := []string{
		"level=INFO msg=audit actor=data-dir action=create kind=profile id=db version_before=0 version_after=1",
		"level=INFO msg=audit actor=data-dir action=create kind=profile id=web version_before=0 version_after=1",
		"level=INFO msg=audit actor=alice action=delete kind=profile id=web version_before=1 version_after=0",
		"level=INFO msg=audit actor=token-file action=token-remove kind=token id=token-",
	}
	if len(auditLines) != len(wantLines) {
		t.Fatalf("audit log lines:\n%s\nwant %d", strings.Join(auditLines, "\n"), len(wantLines))
	}
	for i, w := range wantLines {
		if !strings.Contains(auditLines[i], w) {
			t.Errorf("audit log line %d: %s\nwant it to hold %s", i, auditLines[i], w)
		}
	}
}
