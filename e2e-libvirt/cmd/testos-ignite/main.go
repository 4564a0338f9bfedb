// Command testos-ignite is the first-boot step of the end-to-end test OS: it
// fetches an Ignition config over HTTP, applies the part the test OS
// understands (files with data: URLs, directories, the host name from
// /etc/hostname) and prints markers on standard output for the harness to
// find in the serial log.
//
// Usage: testos-ignite URL
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is the subset of an Ignition (v2 or v3) config applied here.
type config struct {
	Ignition struct {
		Version string `json:"version"`
	} `json:"ignition"`
	Storage struct {
		Directories []struct {
			Path string `json:"path"`
			Mode *int   `json:"mode"`
		} `json:"directories"`
		Files []struct {
			Path     string `json:"path"`
			Mode     *int   `json:"mode"`
			Contents struct {
				Source string `json:"source"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testos-ignite URL")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Printf("TESTOS: config failed: %v\n", err)
		os.Exit(1)
	}
}

func run(u string) error {
	body, err := fetch(u)
	if err != nil {
		return err
	}
	fmt.Printf("TESTOS: config fetched (%d bytes)\n", len(body))
	var c config
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("parse config from %s: %w", u, err)
	}
	fmt.Printf("TESTOS: ignition version=%s\n", c.Ignition.Version)
	for _, d := range c.Storage.Directories {
		if err := os.MkdirAll(d.Path, mode(d.Mode, 0o755)); err != nil {
			return fmt.Errorf("directory %s: %w", d.Path, err)
		}
	}
	for _, f := range c.Storage.Files {
		data, err := decodeDataURL(f.Contents.Source)
		if err != nil {
			fmt.Printf("TESTOS: file %s skipped: %v\n", f.Path, err)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
		if err := os.WriteFile(f.Path, data, mode(f.Mode, 0o644)); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
		fmt.Printf("TESTOS: file %s (%d bytes)\n", f.Path, len(data))
		if f.Path == "/etc/hostname" {
			name := strings.TrimSpace(string(data))
			if err := syscall.Sethostname([]byte(name)); err != nil {
				return fmt.Errorf("set host name %q: %w", name, err)
			}
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("TESTOS: hostname=%s\n", host)
	return nil
}

// fetch GETs u, retrying for a while: the network may still be settling.
func fetch(u string) ([]byte, error) {
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		body, err := get(ctx, u)
		cancel()
		if err == nil {
			return body, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("config URL %q: %w", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	return body, nil
}

// decodeDataURL decodes an RFC 2397 data: URL (percent-encoded or base64).
func decodeDataURL(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return nil, fmt.Errorf("source %.40q is not a data: URL", s)
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			return nil, fmt.Errorf("data URL: %w", err)
		}
		return b, nil
	}
	b, err := url.PathUnescape(payload)
	if err != nil {
		return nil, fmt.Errorf("data URL: %w", err)
	}
	return []byte(b), nil
}

func mode(m *int, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & os.ModePerm
}
