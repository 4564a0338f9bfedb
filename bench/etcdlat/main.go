// Command etcdlat measures how long a catalog write acknowledged by one
// matchbox instance takes to be served by every instance: it writes a
// group N times through one instance's API (PUT /api/v1/groups/ID, each
// time with another metadata value that the profile's templated kernel
// arguments print), and after each acknowledgement polls /ipxe?mac=MAC on
// every instance until its answer holds the new value. It prints the
// p50, p99 and maximum of the write's own latency, of each instance's
// delay after the acknowledgement, and of the delay until every instance
// served it; it fails when a write is not served everywhere within
// -timeout.
//
//	etcdlat -write http://A -serve http://A,http://B,http://C -profile node -n 100
//
// The profile must print the group's metadata "hostname" in the iPXE
// script (as bench/etcd.sh's "node" profile does with hostname={{.hostname}}).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// config says what to write and where to look.
type config struct {
	write   string   // base URL of the instance written through
	serve   []string // base URLs of the instances polled
	profile string   // profile of the written group
	group   string   // id of the written group
	mac     string   // the group's selector
	n       int      // writes
	timeout time.Duration
	poll    time.Duration
}

// result holds the measured delays.
type result struct {
	ack      []time.Duration   // PUT sent → acknowledged
	instance [][]time.Duration // per instance: acknowledged → served
	all      []time.Duration   // acknowledged → served by every instance
}

func main() {
	var c config
	var serve string
	flag.StringVar(&c.write, "write", "", "base URL of the instance the writes go through")
	flag.StringVar(&serve, "serve", "", "comma-separated base URLs of the instances polled")
	flag.StringVar(&c.profile, "profile", "node", "profile of the written group (prints the metadata hostname)")
	flag.StringVar(&c.group, "group", "etcdlat", "id of the written group")
	flag.StringVar(&c.mac, "mac", "02:ff:00:00:00:01", "MAC selector of the written group")
	flag.IntVar(&c.n, "n", 100, "writes")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Second, "fail when a write is not served everywhere within this")
	flag.DurationVar(&c.poll, "poll", time.Millisecond, "pause between two polls of one instance")
	flag.Parse()
	if c.write == "" || serve == "" || c.n < 1 {
		fmt.Fprintln(os.Stderr, "etcdlat: -write, -serve and -n >= 1 are required")
		os.Exit(2)
	}
	c.serve = strings.Split(serve, ",")
	res, err := run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdlat:", err)
		os.Exit(1)
	}
	report(os.Stdout, c, res)
}

// run makes c.n writes and measures each one.
func run(ctx context.Context, c config) (*result, error) {
	cli := &http.Client{Timeout: 10 * time.Second}
	res := &result{instance: make([][]time.Duration, len(c.serve))}
	for i := range c.n {
		want := fmt.Sprintf("etcdlat-%d-%d.example.com", time.Now().UnixNano(), i)
		body := fmt.Sprintf(`{"id":%q,"profile":%q,"selector":{"mac":%q},"metadata":{"hostname":%q,"rack":"lat"}}`, c.group, c.profile, c.mac, want)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.write+"/api/v1/groups/"+c.group, bytes.NewBufferString(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		sent := time.Now()
		resp, err := cli.Do(req)
		if err != nil {
			return nil, fmt.Errorf("write %d: %w", i, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("write %d: PUT %s/api/v1/groups/%s: %s: %s", i, c.write, c.group, resp.Status, bytes.TrimSpace(msg))
		}
		acked := time.Now()
		res.ack = append(res.ack, acked.Sub(sent))
		delays := make([]time.Duration, len(c.serve))
		errs := make([]error, len(c.serve))
		var wg sync.WaitGroup
		for j, base := range c.serve {
			wg.Go(func() { delays[j], errs[j] = served(ctx, cli, base+"/ipxe?mac="+c.mac, want, acked, c) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("write %d: %w", i, err)
		}
		for j, d := range delays {
			res.instance[j] = append(res.instance[j], d)
		}
		res.all = append(res.all, slices.Max(delays))
	}
	return res, nil
}

// served polls url until its answer contains want, and returns the time
// from acked until then.
func served(ctx context.Context, cli *http.Client, url, want string, acked time.Time, c config) (time.Duration, error) {
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := cli.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%s: %s", resp.Status, b)
			if resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(want)) {
				return time.Since(acked), nil
			}
		} else {
			last = err.Error()
		}
		if time.Since(acked) > c.timeout {
			return 0, fmt.Errorf("GET %s does not serve %s %v after the write was acknowledged; last answer: %.300s", url, want, c.timeout, last)
		}
		time.Sleep(c.poll)
	}
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func line(w io.Writer, name string, ds []time.Duration) {
	fmt.Fprintf(w, "%-40s p50 %10v  p99 %10v  max %10v\n", name, pct(ds, 50).Round(10*time.Microsecond), pct(ds, 99).Round(10*time.Microsecond), slices.Max(ds).Round(10*time.Microsecond))
}

// report prints the figures of res.
func report(w io.Writer, c config, res *result) {
	fmt.Fprintf(w, "%d writes through %s, each polled on %d instances\n", c.n, c.write, len(c.serve))
	line(w, "write acknowledged (PUT)", res.ack)
	for j, base := range c.serve {
		line(w, "acknowledged -> served by "+base, res.instance[j])
	}
	line(w, "acknowledged -> served everywhere", res.all)
}
