package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiLog is what the API writers were acknowledged, and what they sent
// without an answer (a write the kill may or may not have committed).
type apiLog struct {
	mu sync.Mutex
	// profiles maps an acknowledged profile id to its kernel.
	profiles map[string]string
	// applies maps an apply's number to whether it was acknowledged; every
	// apply writes applyN profiles "a<number>-<j>".
	applies map[int]bool
	// labels is the highest labels sequence acknowledged for machine m0.
	labels int
	// bmc, set and state are the sequential writers of machine m1's BMC
	// (PUT .../bmc, its address encoding the write's number), m2 through
	// `matchbox machine set --label seq=N --state S` and m3's state (PUT
	// .../state).
	bmc, set, state             seqWrites
	bmcAcks, setAcks, stateAcks int
	writes                      int
	// lastErr is the last refusal of a sequential writer.
	lastErr string
}

const applyN = 5

// seqWrites is one sequential writer's history since the last check: the
// numbers of the writes it sent, in order, and the index of the last one
// acknowledged. After a kill the store holds the last acknowledged write
// or a later one sent (the kill may have cut its answer), never an earlier
// one.
type seqWrites struct {
	sent  []int
	acked int
}

// settle makes n, found stored, the baseline of the next round.
func (s *seqWrites) settle(n int) { s.sent, s.acked = []int{n}, 0 }

func (s *seqWrites) send(n int) { s.sent = append(s.sent, n) }

// ack marks the last write sent acknowledged.
func (s *seqWrites) ack() { s.acked = len(s.sent) - 1 }

// allowed reports whether the store may hold write n.
func (s *seqWrites) allowed(n int) bool {
	for _, m := range s.sent[s.acked:] {
		if m == n {
			return true
		}
	}
	return false
}

// states are the states the state writers cycle through.
var states = []string{"ready", "provisioning", "provisioned", "failed", "discovered"}

func stateOf(n int) string { return states[n%len(states)] }

// bmcAddress encodes a write's number in a BMC address, 10.x.y.z.
func bmcAddress(n int) string { return fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255) }

// TestCrashAPI kills matchbox with SIGKILL at random moments while
// concurrent writers use the API: PUT of profiles, apply of bundles of
// applyN profiles, label writes on a machine, BMC records of another,
// `matchbox machine set` (labels and state in one write) of a third and
// state transitions of a fourth. After each restart every acknowledged
// write is present (with the content written, for a sequential writer its
// last acknowledged write or a later one), every apply is all or nothing,
// a machine set's label and state come from the same write, and
// integrity_check is ok.
func TestCrashAPI(t *testing.T) {
	needBinaries(t)
	needRoot(t, "sqlite3")
	nKills := kills(4, 50)
	l := newLab(t, 0)
	dir := t.TempDir()
	srv := newServer(t, l.srv, dir, "127.0.0.1:8080")
	srv.start()
	for i, extra := range []string{`, "labels": {"seq": "0"}`, ``, `, "labels": {"seq": "0"}, "state": "ready"`, `, "state": "ready"`} {
		body := fmt.Sprintf(`{"macs": ["52:54:00:77:00:%02x"]%s}`, i+1, extra)
		if code, resp := apiDo(srv, http.MethodPut, fmt.Sprintf("/api/v1/machines/m%d", i), body); code/100 != 2 {
			t.Fatalf("declare machine m%d: %d %s", i, code, resp)
		}
	}
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/machines/m1/bmc", fmt.Sprintf(`{"address": %q, "driver": "ipmi"}`, bmcAddress(0))); code/100 != 2 {
		t.Fatalf("declare m1's BMC: %d %s", code, body)
	}
	log := &apiLog{profiles: map[string]string{}, applies: map[int]bool{}}
	log.bmc.settle(0)
	log.set.settle(0)
	log.state.settle(0)
	seq := 0 // numbers writes across restarts, so that every id is new
	total := 0
	for k := range nKills {
		if k > 0 {
			srv.start()
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				apiWriter(ctx, srv, log, w, k, &seq)
			}()
		}
		time.Sleep(randomDelay(500*time.Millisecond, 2*time.Second))
		srv.kill9()
		cancel()
		wg.Wait()
		integrityOK(t, srv.db)
		srv.start()
		total += checkAPI(t, k, srv, log)
		srv.kill9()
		if t.Failed() {
			t.Logf("server log: %s", srv.tail())
			return
		}
	}
	acked := 0
	for _, a := range log.applies {
		if a {
			acked++
		}
	}
	t.Logf("%d kills survived; %d acknowledged writes (%d profile PUTs, %d applies of %d profiles each, of %d sent; label writes up to seq %d; %d BMC PUTs, %d machine sets, %d state changes); %d checks",
		nKills, log.writes, len(log.profiles), acked, applyN, len(log.applies), log.labels, log.bmcAcks, log.setAcks, log.stateAcks, total)
	if log.bmcAcks == 0 || log.setAcks == 0 || log.stateAcks == 0 {
		t.Errorf("a sequential writer was never acknowledged (BMC %d, machine set %d, state %d); last refusal: %s", log.bmcAcks, log.setAcks, log.stateAcks, log.lastErr)
	}
	if log.writes < nKills {
		t.Errorf("only %d acknowledged writes in %d restarts: the writers did not write", log.writes, nKills)
	}
}

// apiWriter writes until ctx ends: writer 0 PUTs profiles, writer 1
// applies bundles, writer 2 writes m0's labels, writer 3 m1's BMC,
// writer 4 runs `matchbox machine set m2`, writer 5 sets m3's state.
func apiWriter(ctx context.Context, srv *server, log *apiLog, w, k int, seq *int) {
	next := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		*seq++
		return *seq
	}
	for ctx.Err() == nil {
		n := next()
		switch w {
		case 0:
			id, kernel := fmt.Sprintf("p%d", n), fmt.Sprintf("/k/%d/%d", k, n)
			code, _ := apiDo(srv, http.MethodPut, "/api/v1/profiles/"+id, fmt.Sprintf(`{"id": %q, "boot": {"kernel": %q}}`, id, kernel))
			if code == http.StatusCreated || code == http.StatusOK {
				log.mu.Lock()
				log.profiles[id], log.writes = kernel, log.writes+1
				log.mu.Unlock()
			}
		case 1:
			files := map[string]string{}
			for j := range applyN {
				files[fmt.Sprintf("profiles/a%d-%d.json", n, j)] = fmt.Sprintf(`{"boot": {"kernel": "/apply/%d"}}`, n)
			}
			b, _ := json.Marshal(map[string]any{"files": files})
			log.mu.Lock()
			log.applies[n] = false // sent: may or may not be committed
			log.mu.Unlock()
			code, _ := apiDo(srv, http.MethodPost, "/api/v1/apply", string(b))
			if code == http.StatusOK {
				log.mu.Lock()
				log.applies[n], log.writes = true, log.writes+1
				log.mu.Unlock()
			}
		case 2:
			code, _ := apiDo(srv, http.MethodPut, "/api/v1/machines/m0/labels", fmt.Sprintf(`{"labels": {"seq": "%d"}}`, n))
			if code/100 == 2 {
				log.mu.Lock()
				log.labels, log.writes = max(log.labels, n), log.writes+1
				log.mu.Unlock()
			}
		case 3:
			log.mu.Lock()
			log.bmc.send(n)
			log.mu.Unlock()
			code, body := apiDo(srv, http.MethodPut, "/api/v1/machines/m1/bmc", fmt.Sprintf(`{"address": %q, "port": %d, "driver": "ipmi"}`, bmcAddress(n), 1+n%65000))
			log.mu.Lock()
			if code/100 == 2 {
				log.bmc.ack()
				log.bmcAcks, log.writes = log.bmcAcks+1, log.writes+1
			} else {
				log.lastErr = fmt.Sprintf("%d %s", code, body)
			}
			log.mu.Unlock()
		case 4:
			log.mu.Lock()
			log.set.send(n)
			log.mu.Unlock()
			err := srv.cli(ctx, "machine", "set", "m2", "--label", fmt.Sprintf("seq=%d", n), "--state", stateOf(n))
			log.mu.Lock()
			if err == nil {
				log.set.ack()
				log.setAcks, log.writes = log.setAcks+1, log.writes+1
			} else {
				log.lastErr = err.Error()
			}
			log.mu.Unlock()
		case 5:
			log.mu.Lock()
			log.state.send(n)
			log.mu.Unlock()
			code, body := apiDo(srv, http.MethodPut, "/api/v1/machines/m3/state", fmt.Sprintf(`{"state": %q}`, stateOf(n)))
			log.mu.Lock()
			if code/100 == 2 {
				log.state.ack()
				log.stateAcks, log.writes = log.stateAcks+1, log.writes+1
			} else {
				log.lastErr = fmt.Sprintf("%d %s", code, body)
			}
			log.mu.Unlock()
		}
	}
}

// checkAPI reads, through the restarted server, every acknowledged write
// and every apply sent, and returns how many writes it checked.
func checkAPI(t *testing.T, k int, srv *server, log *apiLog) int {
	t.Helper()
	log.mu.Lock()
	defer log.mu.Unlock()
	stored := map[string]string{} // profile id: kernel
	after := ""
	for {
		code, body := apiDo(srv, http.MethodGet, "/api/v1/profiles?limit=1000&after="+after, "")
		if code != http.StatusOK {
			t.Fatalf("after kill %d: list profiles: %d %s", k, code, body)
		}
		var page struct {
			Items []struct {
				ID      string `json:"id"`
				Profile struct {
					Boot struct {
						Kernel string `json:"kernel"`
					} `json:"boot"`
				} `json:"profile"`
			} `json:"items"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatalf("after kill %d: list profiles: %v: %.300s", k, err, body)
		}
		for _, it := range page.Items {
			stored[it.ID] = it.Profile.Boot.Kernel
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	checked := 0
	for id, kernel := range log.profiles {
		checked++
		if got, ok := stored[id]; !ok || got != kernel {
			t.Errorf("after kill %d: profile %s was acknowledged with kernel %s, stored: %q (present %v)", k, id, kernel, got, ok)
		}
	}
	for n, acked := range log.applies {
		present := 0
		for j := range applyN {
			if got, ok := stored[fmt.Sprintf("a%d-%d", n, j)]; ok && got == fmt.Sprintf("/apply/%d", n) {
				present++
			}
		}
		switch {
		case acked && present != applyN:
			t.Errorf("after kill %d: apply %d was acknowledged, %d of its %d profiles stored", k, n, present, applyN)
		case present != 0 && present != applyN:
			t.Errorf("after kill %d: apply %d half-applied: %d of its %d profiles stored", k, n, present, applyN)
		}
		if acked {
			checked++
		}
	}
	code, body := apiDo(srv, http.MethodGet, "/api/v1/machines/m0", "")
	var m struct {
		Labels map[string]string `json:"labels"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("after kill %d: get m0: %d %.300s", k, code, body)
	}
	var got int
	fmt.Sscan(m.Labels["seq"], &got)
	if got < log.labels {
		t.Errorf("after kill %d: m0's labels were acknowledged up to seq %d, stored seq %q", k, log.labels, m.Labels["seq"])
	}
	checked++
	checked += checkSequential(t, k, srv, log)
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kill %d: %d profiles stored, %d checked\n", k, len(stored), checked)
	}
	return checked
}

// checkSequential checks the sequential writers' machines m1 (BMC), m2
// (machine set) and m3 (state) and makes what is stored the baseline of
// the next round.
func checkSequential(t *testing.T, k int, srv *server, log *apiLog) int {
	t.Helper()
	get := func(path string, v any) {
		t.Helper()
		code, body := apiDo(srv, http.MethodGet, path, "")
		if code != http.StatusOK || json.Unmarshal([]byte(body), v) != nil {
			t.Fatalf("after kill %d: GET %s: %d %.300s", k, path, code, body)
		}
	}
	var bmc struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
	}
	get("/api/v1/machines/m1/bmc", &bmc)
	var a, b, c int
	fmt.Sscanf(bmc.Address, "10.%d.%d.%d", &a, &b, &c)
	n := a<<16 | b<<8 | c
	switch {
	case !log.bmc.allowed(n):
		t.Errorf("after kill %d: m1's BMC holds write %d (%s), want the last acknowledged (%d) or a later one of %v", k, n, bmc.Address, log.bmc.sent[log.bmc.acked], log.bmc.sent[log.bmc.acked:])
	case n != 0 && bmc.Port != 1+n%65000:
		t.Errorf("after kill %d: m1's BMC holds address %s of write %d with port %d of another", k, bmc.Address, n, bmc.Port)
	}
	log.bmc.settle(n)

	var m2, m3 struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	}
	get("/api/v1/machines/m2", &m2)
	n = -1
	fmt.Sscan(m2.Labels["seq"], &n)
	switch {
	case !log.set.allowed(n):
		t.Errorf("after kill %d: m2 holds machine set %d (seq %q), want the last acknowledged (%d) or a later one of %v", k, n, m2.Labels["seq"], log.set.sent[log.set.acked], log.set.sent[log.set.acked:])
	case n != 0 && m2.State != stateOf(n):
		t.Errorf("after kill %d: m2 holds the label of machine set %d with state %q, not its %q: half a write", k, n, m2.State, stateOf(n))
	}
	log.set.settle(n)

	get("/api/v1/machines/m3", &m3)
	var possible []string
	found := -1
	for _, n := range log.state.sent[log.state.acked:] {
		possible = append(possible, stateOf(n))
		if stateOf(n) == m3.State && found < 0 {
			found = n
		}
	}
	if found < 0 {
		t.Errorf("after kill %d: m3's state is %q, want that of the last acknowledged state change or a later one: %v", k, m3.State, possible)
	}
	log.state.settle(found)
	return 3
}

// cli runs the matchbox command line with args against the server, in
// its namespace; an error when it does not exit 0.
func (s *server) cli(ctx context.Context, args ...string) error {
	cmd := append([]string{bins.matchbox}, args...)
	cmd = append(cmd, "--endpoint", s.base)
	if s.ns != "" {
		cmd = append([]string{"ip", "netns", "exec", s.ns}, cmd...)
	}
	out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// apiDo sends one API request and returns the status (0 when the request
// failed: the server was killed) and the body.
func apiDo(srv *server, method, path, body string) (int, string) {
	req, err := http.NewRequest(method, srv.base+path, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
