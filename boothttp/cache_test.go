package boothttp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"matchbox/matchbox"
)

// extraLifecycle hands every machine its own machine_id.
type extraLifecycle struct{ fakeLifecycle }

func (f *extraLifecycle) TemplateVars(_ context.Context, id string, _ matchbox.MachineState, mac, _ string, _ func(string) bool) map[string]any {
	return map[string]any{"machine_id": "m-" + mac}
}

func cacheCatalog(hostname string) matchbox.Catalog {
	return matchbox.Catalog{
		Profiles: []matchbox.Profile{
			{ID: "meta", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"host={{.hostname}}", "console=ttyS0"}}, IgnitionID: "meta.yaml", GenericID: "meta.txt"},
			{ID: "query", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"os={{.request.query.os}}"}}},
			{ID: "extra", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"id={{.machine_id}}"}}},
			{ID: "all", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"{{index . \"hostname\"}}"}}},
		},
		Groups: []matchbox.Group{
			{ID: "meta", Profile: "meta", Selector: map[string]string{"mac": "52:54:00:00:00:01"}, Metadata: map[string]any{"hostname": hostname}},
			{ID: "meta2", Profile: "meta", Selector: map[string]string{"mac": "52:54:00:00:00:06"}, Metadata: map[string]any{"hostname": "other-" + hostname}},
			{ID: "query", Profile: "query", Selector: map[string]string{"mac": "52:54:00:00:00:02"}},
			{ID: "extra", Profile: "extra", Selector: map[string]string{"rack": "r1"}},
			{ID: "all", Profile: "all", Selector: map[string]string{"mac": "52:54:00:00:00:05"}, Metadata: map[string]any{"hostname": hostname}},
		},
		Templates: []matchbox.Template{
			{Kind: matchbox.TemplateIgnition, Name: "meta.yaml", Content: "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: {{.hostname}}\n"},
			{Kind: matchbox.TemplateGeneric, Name: "meta.txt", Content: "host={{.hostname}}\n"},
		},
	}
}

// TestRenderCache: an answer is rendered once per snapshot and the
// variables its template reads; a change of what it reads (metadata,
// the group, request labels, extra variables) changes the answer, a change of what it
// does not read is served from the cache.
func TestRenderCache(t *testing.T) {
	var cur atomic.Pointer[matchbox.Snapshot]
	build := func(hostname string) {
		snap, err := matchbox.Build(cacheCatalog(hostname), nil)
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(snap)
	}
	build("a.example.com")
	s, err := New(Config{Snapshot: cur.Load, Lifecycle: &extraLifecycle{}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	steps := []struct {
		name       string
		target     string
		newCatalog string // hostname of a new snapshot built before the request
		want       string // a line of the answer
		hit        bool
	}{
		{name: "first", target: "/ipxe?mac=52:54:00:00:00:01", want: "kernel /k host=a.example.com console=ttyS0"},
		{name: "again", target: "/ipxe?mac=52:54:00:00:00:01", want: "kernel /k host=a.example.com console=ttyS0", hit: true},
		{name: "label not read", target: "/ipxe?mac=52:54:00:00:00:01&os=x", want: "kernel /k host=a.example.com console=ttyS0", hit: true},
		{name: "metadata changed", target: "/ipxe?mac=52:54:00:00:00:01", newCatalog: "b.example.com", want: "kernel /k host=b.example.com console=ttyS0"},
		{name: "new snapshot cached", target: "/ipxe?mac=52:54:00:00:00:01", want: "kernel /k host=b.example.com console=ttyS0", hit: true},
		{name: "other group, same profile", target: "/ipxe?mac=52:54:00:00:00:06", want: "kernel /k host=other-b.example.com console=ttyS0"},
		{name: "other group, again", target: "/ipxe?mac=52:54:00:00:00:06", want: "kernel /k host=other-b.example.com console=ttyS0", hit: true},
		{name: "grub apart", target: "/grub?mac=52:54:00:00:00:01", want: `linux "/k" host=b.example.com console=ttyS0`},
		{name: "generic", target: "/generic?mac=52:54:00:00:00:01", want: "host=b.example.com"},
		{name: "generic again", target: "/generic?mac=52:54:00:00:00:01&os=y", want: "host=b.example.com", hit: true},
		{name: "ignition", target: "/ignition?mac=52:54:00:00:00:01", want: `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"compression":"","source":"data:,b.example.com"}}]}}`},
		{name: "ignition again", target: "/ignition?mac=52:54:00:00:00:01", want: `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"compression":"","source":"data:,b.example.com"}}]}}`, hit: true},
		{name: "query read", target: "/ipxe?mac=52:54:00:00:00:02&os=flatcar", want: "kernel /k os=flatcar"},
		{name: "query read, changed", target: "/ipxe?mac=52:54:00:00:00:02&os=fedora", want: "kernel /k os=fedora"},
		{name: "query read, again", target: "/ipxe?mac=52:54:00:00:00:02&os=flatcar", want: "kernel /k os=flatcar", hit: true},
		{name: "extra read", target: "/ipxe?mac=52:54:00:00:00:03&rack=r1", want: "kernel /k id=m-52:54:00:00:00:03"},
		{name: "extra read, other machine same group", target: "/ipxe?mac=52:54:00:00:00:04&rack=r1", want: "kernel /k id=m-52:54:00:00:00:04"},
		{name: "extra read, again", target: "/ipxe?mac=52:54:00:00:00:03&rack=r1", want: "kernel /k id=m-52:54:00:00:00:03", hit: true},
		{name: "reads all: never cached", target: "/ipxe?mac=52:54:00:00:00:05", want: "kernel /k b.example.com"},
		{name: "reads all: again", target: "/ipxe?mac=52:54:00:00:00:05", want: "kernel /k b.example.com"},
	}
	for _, st := range steps {
		if st.newCatalog != "" {
			build(st.newCatalog)
		}
		hits := s.answers.hits.Load()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, st.target, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %s: status %d: %s", st.name, st.target, w.Code, w.Body)
		}
		if !containsLine(w.Body.String(), st.want) {
			t.Errorf("%s: %s answered\n%s\nwant a line %q", st.name, st.target, w.Body, st.want)
		}
		if hit := s.answers.hits.Load() > hits; hit != st.hit {
			t.Errorf("%s: %s: cache hit %v, want %v", st.name, st.target, hit, st.hit)
		}
		if got, want := w.Header().Get("Content-Length"), fmt.Sprint(w.Body.Len()); got != want {
			t.Errorf("%s: Content-Length %q, body %s bytes", st.name, got, want)
		}
	}
}

func containsLine(body, line string) bool {
	for len(body) > 0 {
		i := 0
		for i < len(body) && body[i] != '\n' {
			i++
		}
		if body[:i] == line {
			return true
		}
		if i == len(body) {
			break
		}
		body = body[i+1:]
	}
	return false
}

// TestRenderCacheBounded: a full generation starts over instead of growing.
func TestRenderCacheBounded(t *testing.T) {
	snap, err := matchbox.Build(cacheCatalog("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := renderCache{max: 100, current: func() *matchbox.Snapshot { return snap }}
	for i := range 50 {
		c.put(snap, []byte(fmt.Sprint("key", i)), make([]byte, 10))
	}
	g := c.generation(snap)
	if g.bytes > 100 || len(g.answers) > 10 {
		t.Errorf("cache holds %d answers, %d bytes; bound 100 bytes", len(g.answers), g.bytes)
	}
	if _, ok := c.get(snap, []byte("key49")); !ok {
		t.Error("the last answer put is not kept")
	}
}

// BenchmarkIPXETemplated measures /ipxe through the real handler, every
// request naming the next of 10,000 MACs, whose profile's kernel
// arguments are templates of the group's metadata (bench/http.sh's
// workload without the network). Every answer is rendered once before
// the timer starts, as bench/http.sh fetches them for nginx before its
// rounds: what is measured is the repeated request.
func BenchmarkIPXETemplated(b *testing.B) {
	const groups = 10000
	c := matchbox.Catalog{Profiles: []matchbox.Profile{{ID: "p", Boot: matchbox.Boot{Kernel: "/assets/k", Initrd: []string{"/assets/i"}, Args: []string{"hostname={{.hostname}}", "rack={{.rack}}", "console=ttyS0"}}}}}
	targets := make([]string, groups)
	for i := range groups {
		mac := fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
		c.Groups = append(c.Groups, matchbox.Group{ID: fmt.Sprintf("g%d", i), Profile: "p", Selector: map[string]string{"mac": mac},
			Metadata: map[string]any{"hostname": fmt.Sprintf("node-%05d.example.com", i), "rack": fmt.Sprintf("r%02d", i%40)}})
		targets[i] = "/ipxe?mac=" + mac
	}
	snap, err := matchbox.Build(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }})
	h := s.Handler()
	reqs := make([]*http.Request, groups)
	for i, t := range targets {
		reqs[i] = httptest.NewRequest(http.MethodGet, t, nil)
		// bench/http.sh fetches every answer once before its rounds.
		h.ServeHTTP(httptest.NewRecorder(), reqs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i%groups])
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// TestRenderCacheSwapUnderLoad hammers snapshot swaps (writes) and
// lookups of requests that took their snapshot before a swap: the cache's
// generation only moves to newer snapshots, and every answer is the one
// put for its own snapshot.
func TestRenderCacheSwapUnderLoad(t *testing.T) {
	const swaps = 300
	var (
		cur atomic.Pointer[matchbox.Snapshot]
		seq sync.Map // *matchbox.Snapshot -> int, in order of swaps
	)
	swap := func(i int) {
		snap, err := matchbox.Build(cacheCatalog(fmt.Sprint("h", i)), nil)
		if err != nil {
			t.Error(err)
			return
		}
		seq.Store(snap, i)
		cur.Store(snap)
	}
	swap(0)
	c := &renderCache{current: cur.Load}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				snap := cur.Load() // the request's snapshot
				runtime.Gosched()  // ... a swap may come before it renders
				i, _ := seq.Load(snap)
				want := fmt.Sprint("answer of ", i)
				key := []byte(fmt.Sprint("key", r, "-", n%8))
				got, ok := c.get(snap, key)
				if !ok {
					got = c.put(snap, key, []byte(want))
				}
				if string(got.body) != want {
					t.Errorf("snapshot %d answered %q", i, got.body)
					return
				}
			}
		}()
	}
	var regressions atomic.Int64
	wg.Add(1)
	go func() { // watches the installed generation
		defer wg.Done()
		last := -1
		for {
			select {
			case <-done:
				return
			default:
			}
			if g := c.cur.Load(); g != nil {
				i, _ := seq.Load(g.snap)
				if n := i.(int); n < last {
					regressions.Add(1)
				} else {
					last = n
				}
			}
			runtime.Gosched()
		}
	}()
	for i := 1; i <= swaps; i++ {
		swap(i)
		time.Sleep(100 * time.Microsecond)
	}
	close(done)
	wg.Wait()
	if n := regressions.Load(); n > 0 {
		t.Errorf("the cache went back to an older snapshot's generation %d times", n)
	}
	c.get(cur.Load(), []byte("any"))
	if c.cur.Load().snap != cur.Load() {
		t.Error("a request of the current snapshot does not install its generation")
	}
}

// TestConcurrentAnswersOwnLabels: requests served at once, each naming
// its own machine, each get their own machine's answer, whatever the
// selections and labels maps reused between requests held before.
func TestConcurrentAnswersOwnLabels(t *testing.T) {
	const machines, workers, rounds = 200, 8, 5
	c := matchbox.Catalog{Profiles: []matchbox.Profile{{ID: "p", Boot: matchbox.Boot{Kernel: "/k", Args: []string{"hostname={{.hostname}}"}}}}}
	for i := range machines {
		c.Groups = append(c.Groups, matchbox.Group{ID: fmt.Sprintf("g%d", i), Profile: "p",
			Selector: map[string]string{"mac": fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)},
			Metadata: map[string]any{"hostname": fmt.Sprintf("node-%d", i)}})
	}
	snap, err := matchbox.Build(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Snapshot: func() *matchbox.Snapshot { return snap }, Lifecycle: &extraLifecycle{}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	var wg sync.WaitGroup
	errs := make(chan string, workers*machines*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range machines * rounds {
				i := (n*7 + w*31) % machines
				// Every other request carries another label too, so that
				// a map reused without being emptied would show.
				target := fmt.Sprintf("/ipxe?mac=02-00-00-00-%02x-%02x", i>>8, i&0xff)
				if n%2 == 0 {
					target = fmt.Sprintf("/ipxe?os=w%d&mac=02:00:00:00:%02x:%02x", w, i>>8, i&0xff)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
				want := fmt.Sprintf("kernel /k hostname=node-%d", i)
				if rec.Code != http.StatusOK || !containsLine(rec.Body.String(), want) {
					errs <- fmt.Sprintf("%s: %d %q, want a line %q", target, rec.Code, rec.Body, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
