package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"matchbox/hardware/collect"
)

// Exit codes.
const (
	exitOK         = 0
	exitUsage      = 2
	exitCollect    = 3
	exitRefused    = 4
	exitReport     = 5
	exitAfterError = 6
)

// After actions.
const (
	afterNone     = "none"
	afterReboot   = "reboot"
	afterPowerOff = "poweroff"
)

// agent holds what the agent's run depends on, so tests replace the
// network timing and the reboot call.
type agent struct {
	stdout, stderr io.Writer
	client         *http.Client
	attempts       int                       // POST attempts before giving up
	backoff        time.Duration             // wait before the second attempt; doubles after
	reboot         func(action string) error // performs reboot or poweroff
	pid            int                       // the agent's process ID
}

// config is the agent's settings after flags and kernel command line.
type config struct {
	root, url, id, token, after string
	print                       bool
	afterSet                    bool // after was given as a flag or a kernel argument
}

func (a *agent) run(ctx context.Context, args []string) int {
	log := slog.New(slog.NewTextHandler(a.stderr, nil))
	cfg, err := a.configure(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(a.stderr, "matchbox-agent: %v\n", err)
		return exitUsage
	}
	code := a.report(ctx, log, cfg)
	if cfg.after == afterNone {
		return code
	}
	log.Info("running after action", "action", cfg.after)
	if err := a.reboot(cfg.after); err != nil {
		log.Error("after action failed", "action", cfg.after, "err", err)
		if code == exitOK {
			code = exitAfterError
		}
	}
	return code
}

// report collects the inventory, prints it and posts it as configured.
func (a *agent) report(ctx context.Context, log *slog.Logger, cfg config) int {
	inv, err := collect.Collect(ctx, cfg.root)
	if err != nil {
		log.Error("collecting the inventory failed", "root", cfg.root, "err", err)
		return exitCollect
	}
	body, err := json.Marshal(inv)
	if err != nil {
		log.Error("encoding the inventory failed", "err", err)
		return exitCollect
	}
	if cfg.print {
		if _, err := fmt.Fprintf(a.stdout, "%s\n", body); err != nil {
			log.Error("printing the inventory failed", "err", err)
			return exitCollect
		}
	}
	if cfg.url == "" {
		return exitOK
	}
	return a.post(ctx, log, cfg, body)
}

func (a *agent) configure(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("matchbox-agent", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&cfg.root, "root", "/", "directory holding proc and sys (a fixture tree for tests)")
	fs.StringVar(&cfg.url, "url", "", "matchbox base URL (kernel argument matchbox.url)")
	fs.StringVar(&cfg.id, "machine-id", "", "machine ID to report as (matchbox.id)")
	fs.StringVar(&cfg.token, "token", "", "bearer token for the report (matchbox.token)")
	fs.StringVar(&cfg.after, "after", "", "after reporting: reboot, poweroff or none (matchbox.after)")
	fs.BoolVar(&cfg.print, "print", false, "print the inventory JSON to stdout (matchbox.print=1)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	kargs := parseCmdline(readFile(filepath.Join(cfg.root, "proc", "cmdline")))
	fill := func(flagName, karg string, dst *string) {
		if v, ok := kargs[karg]; ok && !set[flagName] {
			*dst = v
		}
	}
	fill("url", "matchbox.url", &cfg.url)
	fill("machine-id", "matchbox.id", &cfg.id)
	fill("token", "matchbox.token", &cfg.token)
	fill("after", "matchbox.after", &cfg.after)
	if v, ok := kargs["matchbox.print"]; ok && !set["print"] {
		cfg.print = v == "" || v == "1" || v == "true" || v == "yes"
	}
	_, kafter := kargs["matchbox.after"]
	cfg.afterSet = set["after"] || kafter

	if cfg.after == "" {
		cfg.after = afterNone
		if a.pid == 1 {
			// An init that exits panics the kernel.
			cfg.after = afterPowerOff
		}
	}
	switch cfg.after {
	case afterNone, afterReboot, afterPowerOff:
	default:
		return config{}, fmt.Errorf("--after %q: want reboot, poweroff or none", cfg.after)
	}
	if cfg.after != afterNone && !cfg.afterSet && a.pid != 1 {
		cfg.after = afterNone
	}
	if cfg.url != "" {
		u, err := url.Parse(cfg.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config{}, fmt.Errorf("--url %q: want an http or https URL", cfg.url)
		}
		if cfg.id == "" {
			return config{}, errors.New("--url needs --machine-id (or matchbox.id)")
		}
		if cfg.token == "" {
			return config{}, errors.New("--url needs --token (or matchbox.token)")
		}
	}
	if cfg.url == "" && !cfg.print {
		return config{}, errors.New("nothing to do: give --url (or matchbox.url) or --print (or matchbox.print=1)")
	}
	return cfg, nil
}

// readFile returns a file's content, or "" when it cannot be read.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// parseCmdline splits a kernel command line into key=value pairs, keeping
// double-quoted values with spaces together; a later key wins. A word
// without "=" maps to "".
func parseCmdline(s string) map[string]string {
	out := map[string]string{}
	var word strings.Builder
	quoted := false
	flush := func() {
		if word.Len() == 0 {
			return
		}
		k, v, _ := strings.Cut(word.String(), "=")
		out[k] = v
		word.Reset()
	}
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			word.WriteRune(r)
		}
	}
	flush()
	return out
}

// statusError is a non-2xx answer from matchbox.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("matchbox answered %d %s", e.code, http.StatusText(e.code))
	}
	return fmt.Sprintf("matchbox answered %d %s: %s", e.code, http.StatusText(e.code), e.body)
}

func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests || se.code == http.StatusRequestTimeout
	}
	return true // network errors
}

// post sends the inventory, retrying with exponential backoff.
func (a *agent) post(ctx context.Context, log *slog.Logger, cfg config, body []byte) int {
	endpoint := strings.TrimRight(cfg.url, "/") + "/api/v1/machines/" + url.PathEscape(cfg.id) + "/inventory"
	wait := a.backoff
	var err error
	for attempt := 1; attempt <= a.attempts; attempt++ {
		err = a.postOnce(ctx, endpoint, cfg.token, body)
		if err == nil {
			log.Info("inventory reported", "url", endpoint, "attempt", attempt)
			return exitOK
		}
		if !retryable(err) {
			log.Error("matchbox refused the inventory", "url", endpoint, "err", err)
			return exitRefused
		}
		if attempt == a.attempts {
			break
		}
		log.Warn("reporting the inventory failed, retrying", "url", endpoint, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			log.Error("reporting the inventory canceled", "err", ctx.Err())
			return exitReport
		case <-time.After(wait):
		}
		wait *= 2
	}
	log.Error("reporting the inventory failed", "url", endpoint, "attempts", a.attempts, "err", err)
	return exitReport
}

func (a *agent) postOnce(ctx context.Context, endpoint, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(msg))}
	}
	return nil
}
