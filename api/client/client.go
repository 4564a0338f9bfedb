// Package client is a small Go client of the matchbox REST API v1, used by
// the matchbox command line.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"matchbox/api/wire"
	"matchbox/audit"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
)

// Client calls a matchbox API.
type Client struct {
	// Endpoint is the server's base URL (http://127.0.0.1:8080).
	Endpoint string
	// Token is the bearer token; empty sends none.
	Token string
	// HTTP is the HTTP client (http.DefaultClient when nil).
	HTTP *http.Client
	// Warn, when set, receives the text of each warning (Warning header,
	// code 299) of a successful answer: dangling references, say.
	Warn func(warning string)
}

// Error is an error answer of the API.
type Error struct {
	// Status is the HTTP status code.
	Status int
	wire.ErrorDetail
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	if len(e.Problems) > 1 {
		msg += ":\n  " + strings.Join(e.Problems, "\n  ")
	}
	return msg
}

// IsStatus reports whether err is an API error with the given status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// do sends a request and decodes a JSON answer into out (when not nil). It
// returns the answer's ETag.
func (c *Client) do(ctx context.Context, method, p string, header http.Header, body any, out any) (string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	endpoint := strings.TrimSuffix(c.Endpoint, "/")
	req, err := http.NewRequestWithContext(ctx, method, endpoint+"/api/v1"+p, rd)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", method, p, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("%s %s: read answer: %w", method, req.URL.Redacted(), err)
	}
	if resp.StatusCode >= 400 {
		var eb wire.Error
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return "", &Error{Status: resp.StatusCode, ErrorDetail: eb.Error}
		}
		return "", &Error{Status: resp.StatusCode, ErrorDetail: wire.ErrorDetail{Code: "http_error", Message: fmt.Sprintf("%s %s: %s", method, req.URL.Redacted(), strings.TrimSpace(string(data)))}}
	}
	if c.Warn != nil {
		for _, h := range resp.Header.Values("Warning") {
			c.Warn(warningText(h))
		}
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("%s %s: decode answer: %w", method, req.URL.Redacted(), err)
		}
	}
	return resp.Header.Get("ETag"), nil
}

// Plan asks what applying the bundle would change.
func (c *Client) Plan(ctx context.Context, b wire.Bundle, prune bool) (*wire.Plan, error) {
	var p wire.Plan
	if _, err := c.do(ctx, http.MethodPost, "/plan", nil, wire.PlanRequest{Bundle: b, Prune: prune}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Apply applies the bundle in one transaction. planID, when not empty, is
// the plan_id of the reviewed plan: the server refuses the apply (412) when
// its plan would differ.
func (c *Client) Apply(ctx context.Context, b wire.Bundle, prune bool, planID string) (*wire.Plan, error) {
	var p wire.Plan
	if _, err := c.do(ctx, http.MethodPost, "/apply", nil, wire.PlanRequest{Bundle: b, Prune: prune, PlanID: planID}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Collection returns the API path of a kind: profiles, groups, machines,
// templates, or templates/ignition and templates/generic.
func Collection(kind string) (string, error) {
	switch kind {
	case "profile", "profiles":
		return "/profiles", nil
	case "group", "groups":
		return "/groups", nil
	case "machine", "machines":
		return "/machines", nil
	case "template", "templates":
		return "/templates", nil
	case "ignition", "generic":
		return "/templates/" + kind, nil
	case "lease", "leases":
		return "/leases", nil
	case "instance", "instances":
		return "/instances", nil
	}
	return "", fmt.Errorf("unknown kind %q: want profiles, groups, machines, templates, ignition, generic, leases or instances", kind)
}

// List fetches every page of a collection (see Collection).
func (c *Client) List(ctx context.Context, collection string, query url.Values) ([]wire.Item, error) {
	var items []wire.Item
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for {
		var page wire.List
		p := collection
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		if _, err := c.do(ctx, http.MethodGet, p, nil, nil, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.Next == "" {
			return items, nil
		}
		q.Set("after", page.Next)
	}
}

// Get fetches one object of a collection into out and returns its version.
func (c *Client) Get(ctx context.Context, collection, id string, out any) (int64, error) {
	tag, err := c.do(ctx, http.MethodGet, collection+"/"+url.PathEscape(id), nil, nil, out)
	if err != nil {
		return 0, err
	}
	v, _ := strconv.ParseInt(strings.Trim(tag, `"`), 10, 64)
	return v, nil
}

// Delete deletes one object; ifVersion > 0 requires that version.
func (c *Client) Delete(ctx context.Context, collection, id string, ifVersion int64) error {
	h := http.Header{}
	if ifVersion > 0 {
		h.Set("If-Match", strconv.Quote(strconv.FormatInt(ifVersion, 10)))
	}
	_, err := c.do(ctx, http.MethodDelete, collection+"/"+url.PathEscape(id), h, nil, nil)
	return err
}

// Events fetches a machine's timeline (every page). typ filters by exact
// type or prefix ending in a dot; limit > 0 stops after that many events.
func (c *Client) Events(ctx context.Context, machineID, typ string, limit int) ([]matchbox.Event, error) {
	var out []matchbox.Event
	q := url.Values{}
	if typ != "" {
		q.Set("type", typ)
	}
	for {
		var page wire.EventList
		p := "/machines/" + url.PathEscape(machineID) + "/events"
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		if _, err := c.do(ctx, http.MethodGet, p, nil, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Events...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
		if page.Next == 0 {
			return out, nil
		}
		q.Set("after", strconv.FormatInt(page.Next, 10))
	}
}

// Audit fetches the audit trail (every page), oldest first, filtered by
// query (object, actor, since).
func (c *Client) Audit(ctx context.Context, query url.Values) ([]audit.Record, error) {
	out := []audit.Record{}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for {
		var page wire.AuditList
		p := "/audit"
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		if _, err := c.do(ctx, http.MethodGet, p, nil, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Records...)
		if page.Next == 0 {
			return out, nil
		}
		q.Set("after", strconv.FormatInt(page.Next, 10))
	}
}

// machinePath is the API path of a machine's sub-resource.
func machinePath(id, sub string) string {
	p := "/machines/" + url.PathEscape(id)
	if sub != "" {
		p += "/" + sub
	}
	return p
}

// Machine fetches a machine with its inventory summary and version.
func (c *Client) Machine(ctx context.Context, id string) (*wire.Machine, int64, error) {
	var m wire.Machine
	v, err := c.Get(ctx, "/machines", id, &m)
	if err != nil {
		return nil, 0, err
	}
	return &m, v, nil
}

// Inventory fetches a machine's current inventory and its history.
func (c *Client) Inventory(ctx context.Context, id string) (*wire.Inventory, error) {
	var inv wire.Inventory
	if _, err := c.do(ctx, http.MethodGet, machinePath(id, "inventory"), nil, nil, &inv); err != nil {
		return nil, err
	}
	return &inv, nil
}

// SetBMC declares (replaces) a machine's BMC and returns it as stored,
// without credentials.
func (c *Client) SetBMC(ctx context.Context, id string, settings wire.BMC) (*wire.BMC, error) {
	var b wire.BMC
	if _, err := c.do(ctx, http.MethodPut, machinePath(id, "bmc"), nil, settings, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// BMC fetches a machine's BMC, without credentials; a machine without one
// answers 404.
func (c *Client) BMC(ctx context.Context, id string) (*wire.BMC, error) {
	var b wire.BMC
	if _, err := c.do(ctx, http.MethodGet, machinePath(id, "bmc"), nil, nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// DeleteBMC removes a machine's BMC and its credentials.
func (c *Client) DeleteBMC(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, machinePath(id, "bmc"), nil, nil, nil)
	return err
}

// PowerStatus reads a machine's power state through its BMC: on, off or
// unknown.
func (c *Client) PowerStatus(ctx context.Context, id string) (string, error) {
	var st wire.PowerStatus
	if _, err := c.do(ctx, http.MethodPost, machinePath(id, "power"), nil, wire.PowerRequest{Action: "status"}, &st); err != nil {
		return "", err
	}
	return st.Power, nil
}

// Power runs a power action (on, off, cycle, reset, soft) on a machine.
func (c *Client) Power(ctx context.Context, id, action string) (*wire.BMCResult, error) {
	var res wire.BMCResult
	if _, err := c.do(ctx, http.MethodPost, machinePath(id, "power"), nil, wire.PowerRequest{Action: action}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// BootDevice sets a machine's next (or, persistent, every) boot device.
func (c *Client) BootDevice(ctx context.Context, id string, req wire.BootDeviceRequest) (*wire.BMCResult, error) {
	var res wire.BMCResult
	if _, err := c.do(ctx, http.MethodPost, machinePath(id, "bootdevice"), nil, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Provision sends one machine to provisioning: one-time PXE boot, then a
// power cycle (power on when off).
func (c *Client) Provision(ctx context.Context, id string) (*wire.BMCResult, error) {
	var res wire.BMCResult
	if _, err := c.do(ctx, http.MethodPost, machinePath(id, "provision"), nil, nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// ProvisionMany provisions the machines of req (a label selector or ids)
// and returns an outcome per machine; a machine that failed is not an
// error of the call.
func (c *Client) ProvisionMany(ctx context.Context, req wire.ProvisionRequest) (*wire.ProvisionAnswer, error) {
	var out wire.ProvisionAnswer
	if _, err := c.do(ctx, http.MethodPost, "/machines/provision", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReadBundle builds a bundle from a data directory (its profiles/, groups/,
// ignition/ and generic/ folders) or from one file. A file in one of those
// folders keeps its folder; another file is a profile or a group, told by
// whether it has a profile field.
func ReadBundle(p string) (wire.Bundle, bool, error) {
	b := wire.Bundle{Files: map[string]string{}}
	st, err := os.Stat(p)
	if err != nil {
		return b, false, fmt.Errorf("read bundle: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(p)
		if err != nil {
			return b, false, fmt.Errorf("read bundle: %w", err)
		}
		folder := filepath.Base(filepath.Dir(p))
		_, known := datadir.KindOf(folder)
		if !known {
			folder = "profiles"
			var top map[string]any
			if yaml.Unmarshal(data, &top) == nil {
				if _, isGroup := top["profile"]; isGroup {
					folder = "groups"
				}
			}
		}
		b.Files[folder+"/"+filepath.Base(p)] = string(data)
		return b, false, nil
	}
	fsys := os.DirFS(p)
	for _, folder := range datadir.Folders() {
		entries, err := fs.ReadDir(fsys, folder)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return b, true, fmt.Errorf("read bundle %s: %w", p, err)
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
				continue
			}
			full := path.Join(folder, name)
			info, err := fs.Stat(fsys, full)
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			data, err := fs.ReadFile(fsys, full)
			if err != nil {
				return b, true, fmt.Errorf("read bundle %s: %w", p, err)
			}
			b.Files[full] = string(data)
		}
	}
	return b, true, nil
}

// warningText returns the text of a Warning header value
// (`299 matchbox "text"`), or the value itself when it is not of that form.
func warningText(h string) string {
	if i := strings.IndexByte(h, '"'); i >= 0 {
		if text, err := strconv.Unquote(h[i:]); err == nil {
			return text
		}
	}
	return h
}

// Render shows what the machine query names (mac, uuid, other labels)
// would get from a boot endpoint (ipxe, grub, ignition, generic,
// metadata), and which group and profile chose it. Nothing is recorded.
func (c *Client) Render(ctx context.Context, endpoint string, query url.Values) (*wire.Rendered, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("endpoint", endpoint)
	var out wire.Rendered
	if _, err := c.do(ctx, http.MethodGet, "/render?"+q.Encode(), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutMachine creates or replaces a machine's identity, labels and state;
// ifVersion > 0 requires that version (a read-modify-write that another
// writer overtook fails with 412 instead of undoing its change). It
// returns the machine as stored and its version.
func (c *Client) PutMachine(ctx context.Context, m *matchbox.Machine, ifVersion int64) (*wire.Machine, int64, error) {
	h := http.Header{}
	if ifVersion > 0 {
		h.Set("If-Match", strconv.Quote(strconv.FormatInt(ifVersion, 10)))
	}
	var out wire.Machine
	tag, err := c.do(ctx, http.MethodPut, machinePath(m.ID, ""), h, m, &out)
	if err != nil {
		return nil, 0, err
	}
	v, _ := strconv.ParseInt(strings.Trim(tag, `"`), 10, 64)
	return &out, v, nil
}
