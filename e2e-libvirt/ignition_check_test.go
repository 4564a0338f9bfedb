package e2elibvirt

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"matchbox/matchbox/ignition"
)

// servedIgnition fetches the Ignition config matchbox serves a machine, as
// the machine fetched it (from inside the lab's namespace).
func (s *matchboxServer) servedIgnition(ctx context.Context, mac string) ([]byte, error) {
	target := s.BootBase + "/ignition?mac=" + url.QueryEscape(mac)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", target, resp.Status, body)
	}
	return body, nil
}

// assertServedIgnition validates the config served to mac with
// coreos/ignition's own parser, beside what the test OS applied of it.
func assertServedIgnition(t *testing.T, s *matchboxServer, mac string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := s.servedIgnition(ctx, mac)
	if err != nil {
		t.Fatalf("served Ignition of %s: %v", mac, err)
	}
	if err := ignition.Validate(cfg); err != nil {
		t.Fatalf("served Ignition of %s does not pass coreos/ignition's parser: %v\n%s", mac, err, cfg)
	}
}
