package boothttp

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"text/template"

	"matchbox/matchbox"
)

var ipxeTemplate = template.Must(template.New("ipxe").Parse(`#!ipxe
kernel {{.Kernel}}{{range .Args}} {{.}}{{end}}
{{- range .Initrd}}
initrd {{.}}
{{- end}}
boot
`))

var grubTemplate = template.Must(template.New("grub").Parse(`default=0
fallback=1
timeout=1
menuentry "CoreOS (EFI)" {
echo "Loading kernel"
linuxefi "{{.Kernel}}"{{range .Args}} {{.}}{{end}}
echo "Loading initrd"
initrdefi {{range .Initrd}} "{{.}}"{{end}}
}
menuentry "CoreOS (BIOS)" {
echo "Loading kernel"
linux "{{.Kernel}}"{{range .Args}} {{.}}{{end}}
echo "Loading initrd"
initrd {{range .Initrd}} "{{.}}"{{end}}
}
`))

// ipxeExitScript tells iPXE to give up network boot so the firmware boots
// the next device (the disk): what a provisioned machine gets.
const ipxeExitScript = "#!ipxe\nexit\n"

// vars returns the variables of a template whose refs are refs (nil: all
// variables, for /metadata).
func (sel *selection) vars(refs *matchbox.VarRefs) map[string]any {
	req := sel.req
	if sel.extra != nil && req.Extra == nil {
		var uses func(string) bool
		if refs != nil {
			uses = refs.Uses
		}
		req.Extra = sel.extra(uses)
	}
	return matchbox.Variables(sel.match.Group, req)
}

func (sel *selection) boot() (matchbox.Boot, error) {
	b := sel.match.Profile.Boot
	args, err := sel.snap.BootArgs(sel.match.Profile.ID, func() map[string]any {
		return sel.vars(sel.snap.ArgsRefs(sel.match.Profile.ID))
	})
	if err != nil {
		return b, err
	}
	b.Args = args
	return b, nil
}

func (s *Server) ipxe(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if sel.machine != nil && sel.machine.State == matchbox.StateProvisioned {
		sel.event = matchbox.EventIPXE + ".boot_disk"
		fmt.Fprint(w, ipxeExitScript)
		return http.StatusOK, nil
	}
	return s.renderBoot(w, sel, ipxeTemplate)
}

func (s *Server) grub(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	return s.renderBoot(w, sel, grubTemplate)
}

func (s *Server) renderBoot(w http.ResponseWriter, sel *selection, t *template.Template) (int, error) {
	static := sel.snap.StaticArgs(sel.match.Profile.ID)
	if static {
		if script, ok := s.scripts.get(sel.snap, t.Name(), sel.match.Profile.ID); ok {
			w.Write(script)
			return http.StatusOK, nil
		}
	}
	b, err := sel.boot()
	if err != nil {
		return http.StatusInternalServerError, err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, b); err != nil {
		return http.StatusInternalServerError, fmt.Errorf("render %s script: %w", t.Name(), err)
	}
	if static {
		s.scripts.put(sel.snap, t.Name(), sel.match.Profile.ID, out.Bytes())
	}
	w.Write(out.Bytes())
	return http.StatusOK, nil
}

func (s *Server) ignition(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	id := sel.match.Profile.IgnitionID
	if id == "" {
		return http.StatusNotFound, fmt.Errorf("profile %q has no ignition_id", sel.match.Profile.ID)
	}
	data := sel.vars(sel.snap.TemplateRefs(matchbox.TemplateIgnition, id))
	out, err := sel.snap.RenderIgnition(id, data)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
	return http.StatusOK, nil
}

func (s *Server) generic(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	id := sel.match.Profile.GenericID
	if id == "" {
		return http.StatusNotFound, fmt.Errorf("profile %q has no generic_id", sel.match.Profile.ID)
	}
	data := sel.vars(sel.snap.TemplateRefs(matchbox.TemplateGeneric, id))
	out, err := sel.snap.RenderGeneric(id, data)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(out)
	return http.StatusOK, nil
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	data := sel.vars(nil)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := matchbox.WriteEnvFile(w, data); err != nil {
		return http.StatusInternalServerError, err
	}
	return http.StatusOK, nil
}

// asset serves a file of the assets directory with Range support. Folders
// are not listed; names that would leave the directory (.., absolute paths,
// symlinks pointing outside) are refused.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" || strings.HasSuffix(name, "/") || strings.Contains(name, "\\") || !fs.ValidPath(name) || path.Clean(name) != name {
		http.Error(w, "invalid asset path", http.StatusBadRequest)
		return
	}
	f, err := s.assets.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		cause := err // without the name: it is logged once, as path
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		s.log.WarnContext(r.Context(), "asset refused", "path", name, "err", cause)
		http.Error(w, "asset not available", http.StatusForbidden)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, name, st.ModTime(), f)
}
