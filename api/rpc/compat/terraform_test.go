package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matchbox/internal/needs"
	"matchbox/internal/servetest"
)

// The versions the end-to-end test runs: the last Terraform `go install`
// can build, and the provider release that speaks v0.11's API.
const (
	terraformVersion = "v1.5.7"
	providerVersion  = "v0.5.4"
)

// toolCache is where the built Terraform and provider are kept between runs
// ($E2E_CACHE_DIR, or ~/.cache/matchbox-e2e), one folder per version.
func toolCache(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("E2E_CACHE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatalf("cache directory: %v (set E2E_CACHE_DIR)", err)
	}
	return filepath.Join(home, ".cache", "matchbox-e2e")
}

// goCommand runs the go command in dir outside this module; its output is
// returned with the error.
func goCommand(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// cachedBinary returns path, building it with build (into a temporary file
// it then renames into place) when it is missing.
func cachedBinary(t *testing.T, path string, build func(out string) error) string {
	t.Helper()
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		return path
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	defer os.Remove(tmp)
	start := time.Now()
	if err := build(tmp); err != nil {
		if unreachable(err) {
			needs.Skipf(t, "cannot build %s: the Go module proxy is unreachable from here: %v", filepath.Base(path), err)
		}
		t.Fatalf("build %s: %v", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s (cached for the next runs)", path, time.Since(start).Round(time.Second))
	return path
}

// unreachable tells whether a go command failed because the network (the
// module proxy) could not be reached, rather than for a fault of the build.
func unreachable(err error) bool {
	msg := err.Error()
	for _, sign := range []string{"dial tcp", "no such host", "proxyconnect", "connection refused", "i/o timeout", "TLS handshake timeout", "network is unreachable"} {
		if strings.Contains(msg, sign) {
			return true
		}
	}
	return false
}

// terraformBinary builds Terraform with `go install`, once per machine.
func terraformBinary(t *testing.T, ctx context.Context) string {
	path := filepath.Join(toolCache(t), "terraform-"+terraformVersion, "terraform")
	return cachedBinary(t, path, func(out string) error {
		gobin := t.TempDir()
		if _, err := goCommand(ctx, t.TempDir(), []string{"GOBIN=" + gobin}, "install", "github.com/hashicorp/terraform@"+terraformVersion); err != nil {
			return err
		}
		return os.Rename(filepath.Join(gobin, "terraform"), out)
	})
}

// providerBinary builds poseidon/terraform-provider-matchbox from its module
// source (the module proxy does not list poseidon's versions, so `go
// install ...@version` is refused; an exact download works), once per
// machine.
func providerBinary(t *testing.T, ctx context.Context) string {
	path := filepath.Join(toolCache(t), "terraform-provider-matchbox-"+providerVersion, "terraform-provider-matchbox")
	return cachedBinary(t, path, func(out string) error {
		work := t.TempDir()
		js, err := goCommand(ctx, work, nil, "mod", "download", "-json", "github.com/poseidon/terraform-provider-matchbox@"+providerVersion)
		if err != nil {
			return err
		}
		var mod struct{ Dir, Error string }
		if err := json.Unmarshal(js, &mod); err != nil || mod.Dir == "" {
			return fmt.Errorf("go mod download: no module directory in %s (%v %s)", js, err, mod.Error)
		}
		src := filepath.Join(work, "src")
		if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
			return fmt.Errorf("copy the provider's source: %w", err)
		}
		if err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if d.IsDir() {
				mode = 0o755
			}
			return os.Chmod(p, mode)
		}); err != nil {
			return err
		}
		_, err = goCommand(ctx, src, nil, "build", "-o", out, ".")
		return err
	})
}

// terraformConfig is the configuration applied: two profiles (raw Ignition;
// a Container Linux Config with a generic config) and three groups
// (default, by MAC, by MAC and os=installed) with metadata. Groups name
// their profiles by literal, so Terraform may write a group before its
// profile, as it writes a profile before its templates.
const terraformConfig = `
terraform {
  required_providers {
    matchbox = { source = "poseidon/matchbox" }
  }
}

provider "matchbox" {
  endpoint    = "%s"
  client_cert = file("%s")
  client_key  = file("%s")
  ca          = file("%s")
}

resource "matchbox_profile" "fcos" {
  name   = "fcos"
  kernel = "/assets/fedora-coreos/kernel"
  initrd = ["--name main /assets/fedora-coreos/initramfs.img"]
  args   = ["initrd=main", "ignition.config.url=http://matchbox.example.com/ignition?uuid=$${uuid}&mac=$${mac:hexhyp}", "coreos.inst.install_dev=/dev/sda"]
  raw_ignition = <<-EOT
    {
      "ignition": { "version": "3.4.0" },
      "storage": { "files": [{ "path": "/etc/motd", "contents": { "source": "data:,fcos" } }] }
    }
  EOT
}

resource "matchbox_profile" "flatcar" {
  name   = "flatcar"
  kernel = "/assets/flatcar/flatcar_production_pxe.vmlinuz"
  initrd = ["/assets/flatcar/flatcar_production_pxe_image.cpio.gz"]
  args   = ["flatcar.first_boot=yes", "flatcar.config.url=http://matchbox.example.com/ignition?mac=$${mac:hexhyp}&os=installed"]
  container_linux_config = <<-EOT
    variant: flatcar
    version: 1.0.0
    storage:
      files:
        - path: /etc/hostname
          contents:
            inline: {{.hostname}}
  EOT
  generic_config = "host={{.hostname}} role={{.role}}\n"
}

resource "matchbox_group" "default" {
  name    = "default"
  profile = "flatcar"
  metadata = {
    hostname = "anonymous"
    role     = "spare"
  }
}

resource "matchbox_group" "node1" {
  name    = "node1"
  profile = "fcos"
  selector = {
    mac = "52:54:00:a1:9c:ae"
  }
  metadata = {
    hostname = "node1.example.com"
    role     = "installer"
  }
}

resource "matchbox_group" "node1_installed" {
  name    = "node1-installed"
  profile = "flatcar"
  selector = {
    mac = "52:54:00:a1:9c:ae"
    os  = "installed"
  }
  metadata = {
    hostname = "node1.example.com"
    role     = "worker"
  }
}
`

// TestTerraformProvider applies a configuration with real Terraform and the
// real poseidon/terraform-provider-matchbox against `matchbox serve`, checks
// the boot endpoints serve it, that a second plan has no changes, and that
// destroy leaves nothing.
func TestTerraformProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Terraform and the provider on the first run (minutes): not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	tf := terraformBinary(t, ctx)
	provider := providerBinary(t, ctx)

	p := servetest.NewPKI(t, "matchbox")
	s := startServe(t, p)

	work := t.TempDir()
	cliConfig := filepath.Join(work, "terraformrc")
	if err := os.WriteFile(cliConfig, []byte(fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"poseidon/matchbox\" = %q\n  }\n  direct {}\n}\n", filepath.Dir(provider))), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(terraformConfig, s.apiAddr, p.ClientCert, p.ClientKey, p.CAFile)
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	terraform := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, tf, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+cliConfig, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1", "TF_INPUT=0", "HOME="+work)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("terraform %s: %v", strings.Join(args, " "), err)
		}
		if code != wantCode {
			t.Fatalf("terraform %s: exit %d, want %d\n%s\nmatchbox logs:\n%s", strings.Join(args, " "), code, wantCode, out.String(), s.Logs())
		}
		return out.String()
	}

	out := terraform(0, "apply", "-auto-approve", "-no-color")
	if !strings.Contains(out, "Apply complete! Resources: 5 added, 0 changed, 0 destroyed.") {
		t.Fatalf("apply:\n%s", out)
	}

	// The provider wrote each profile before its templates: dangling
	// references were stored and logged on the way, and none is left.
	if !strings.Contains(s.Logs(), `msg="catalog holds a dangling reference" reference="profile \"fcos\": ignition_id \"fcos.ign\" names no ignition template"`) {
		t.Errorf("no dangling reference logged while the provider wrote profile fcos before fcos.ign; logs:\n%s", s.Logs())
	}
	boot := "http://" + s.httpAddr
	if _, metrics := get(t, boot+"/metrics"); !strings.Contains(metrics, "\nmatchbox_catalog_dangling_references 0\n") {
		t.Errorf("/metrics after apply does not report 0 dangling references")
	}

	// The boot endpoints serve what Terraform wrote.
	endpoints := []struct {
		path string
		want []string
	}{
		{"/ipxe?mac=52:54:00:a1:9c:ae", []string{"kernel /assets/fedora-coreos/kernel initrd=main ignition.config.url=http://matchbox.example.com/ignition?uuid=${uuid}&mac=${mac:hexhyp} coreos.inst.install_dev=/dev/sda", "initrd --name main /assets/fedora-coreos/initramfs.img"}},
		{"/ignition?mac=52:54:00:a1:9c:ae", []string{`"source": "data:,fcos"`}},
		{"/metadata?mac=52:54:00:a1:9c:ae", []string{"HOSTNAME=node1.example.com\n", "ROLE=installer\n"}},
		{"/ipxe?mac=52:54:00:a1:9c:ae&os=installed", []string{"kernel /assets/flatcar/flatcar_production_pxe.vmlinuz flatcar.first_boot=yes"}},
		{"/ignition?mac=52:54:00:a1:9c:ae&os=installed", []string{`"path":"/etc/hostname"`, `node1.example.com`}},
		{"/generic?mac=52:54:00:a1:9c:ae&os=installed", []string{"host=node1.example.com role=worker\n"}},
		{"/metadata?mac=52:54:00:a1:9c:ae&os=installed", []string{"ROLE=worker\n", "OS=installed\n"}},
		{"/ipxe?mac=52:54:00:00:00:99", []string{"kernel /assets/flatcar/flatcar_production_pxe.vmlinuz"}},
		{"/generic?mac=52:54:00:00:00:99", []string{"host=anonymous role=spare\n"}},
		{"/metadata?mac=52:54:00:00:00:99", []string{"HOSTNAME=anonymous\n"}},
	}
	for _, e := range endpoints {
		code, body := get(t, boot+e.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d %q", e.path, code, body)
			continue
		}
		for _, w := range e.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s does not contain %q:\n%s", e.path, w, body)
			}
		}
	}

	// Read back byte for byte: a second plan has nothing to do.
	out = terraform(0, "plan", "-detailed-exitcode", "-no-color")
	if !strings.Contains(out, "No changes.") {
		t.Errorf("second plan:\n%s", out)
	}

	out = terraform(0, "destroy", "-auto-approve", "-no-color")
	if !strings.Contains(out, "Destroy complete! Resources: 5 destroyed.") {
		t.Errorf("destroy:\n%s", out)
	}
	// Nothing is left: read through the REST API on the same listener.
	restClient := &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS(t, p.ClientCert, p.ClientKey)}}
	for _, coll := range []string{"profiles", "groups", "templates"} {
		resp, err := restClient.Get("https://" + s.apiAddr + "/api/v1/" + coll)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var list struct{ Items []json.RawMessage }
		if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/%s: %d %s (%v)", coll, resp.StatusCode, body, err)
		}
		if len(list.Items) != 0 {
			t.Errorf("after destroy, /api/v1/%s still holds %s", coll, body)
		}
	}
}
