package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"m/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"m/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"pass","Package":"m/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"m/a","Test":"TestRoot","Output":"=== RUN   TestRoot\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestRoot","Output":"    x_test.go:9: needs root\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestRoot","Output":"--- SKIP: TestRoot (0.00s)\n"}`,
		`{"Action":"skip","Package":"m/a","Test":"TestRoot"}`,
		`{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t0.1s\n"}`,
		`{"Action":"pass","Package":"m/a"}`,
		`{"Action":"output","Package":"m/b","Test":"TestBad","Output":"    b_test.go:3: wrong answer\n"}`,
		`{"Action":"output","Package":"m/b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"m/b","Test":"TestBad"}`,
		`{"Action":"output","Package":"m/b","Output":"FAIL\tm/b\t0.2s\n"}`,
		`{"Action":"fail","Package":"m/b"}`,
	}, "\n")
	var out bytes.Buffer
	failed, err := summarize(strings.NewReader(in), &out)
	if err != nil || !failed {
		t.Fatalf("failed %v err %v", failed, err)
	}
	want := "ok  \tm/a\t0.1s\n" +
		"    b_test.go:3: wrong answer\n--- FAIL: TestBad (0.00s)\n" +
		"FAIL\tm/b\t0.2s\n" +
		"\n1 skipped tests\nSKIP m/a TestRoot: x_test.go:9: needs root\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	failed, _ = summarize(strings.NewReader(`{"Action":"pass","Package":"m/a"}`), &out)
	if failed {
		t.Error("a passing run reported as failed")
	}
}
