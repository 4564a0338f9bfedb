package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
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
	writes int
}

const applyN = 5

// TestCrashAPI kills matchbox with SIGKILL at random moments while
// concurrent writers use the API: PUT of profiles, apply of bundles of
// applyN profiles, and label writes on a machine. After each restart
// every acknowledged write is present (with the content written), every
// apply is all or nothing, and integrity_check is ok.
func TestCrashAPI(t *testing.T) {
	needBinaries(t)
	needRoot(t, "sqlite3")
	nKills := kills(4, 50)
	l := newLab(t, 0)
	dir := t.TempDir()
	srv := newServer(t, l.srv, dir, "127.0.0.1:8080")
	srv.start()
	if code, body := apiDo(srv, http.MethodPut, "/api/v1/machines/m0", `{"macs": ["52:54:00:77:00:01"], "labels": {"seq": "0"}}`); code/100 != 2 {
		t.Fatalf("declare machine m0: %d %s", code, body)
	}
	log := &apiLog{profiles: map[string]string{}, applies: map[int]bool{}}
	seq := 0 // numbers writes across restarts, so that every id is new
	total := 0
	for k := range nKills {
		if k > 0 {
			srv.start()
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 3 {
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
	t.Logf("%d kills survived; %d acknowledged writes (%d profile PUTs, %d applies of %d profiles each, of %d sent; label writes up to seq %d); %d checks",
		nKills, log.writes, len(log.profiles), acked, applyN, len(log.applies), log.labels, total)
	if log.writes < nKills {
		t.Errorf("only %d acknowledged writes in %d restarts: the writers did not write", log.writes, nKills)
	}
}

// apiWriter writes until ctx ends: writer 0 PUTs profiles, writer 1
// applies bundles, writer 2 writes m0's labels.
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
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kill %d: %d profiles stored, %d checked\n", k, len(stored), checked)
	}
	return checked
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
