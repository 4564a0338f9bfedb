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
	return sel.varsWith(sel.extraVars(refs))
}

// extraVars returns the extra variables (the lifecycle's) a template whose
// refs are refs gets.
func (sel *selection) extraVars(refs *matchbox.VarRefs) map[string]any {
	if sel.lc == nil || sel.req.Extra != nil {
		return sel.req.Extra
	}
	var uses func(string) bool
	if refs != nil {
		uses = refs.Uses
	}
	id, state := "", matchbox.MachineState("")
	if sel.machine != nil {
		id, state = sel.machine.ID, sel.machine.State
	}
	return sel.lc.TemplateVars(sel.r.Context(), id, state, sel.labels.MAC(), sel.r.Host, uses)
}

func (sel *selection) varsWith(extra map[string]any) map[string]any {
	req := sel.req
	req.Extra = extra
	return matchbox.Variables(sel.match.Group, req)
}

// answer returns the answer of kind rendered from template id (a profile,
// for boot scripts) whose refs are refs: from the render cache when the
// same variables were rendered before in this snapshot, else from render,
// called with the template's variables, and then cached.
func (s *Server) answer(sel *selection, kind, id string, refs *matchbox.VarRefs, render func(data func() map[string]any) ([]byte, error)) (*cachedAnswer, error) {
	extra := sel.extraVars(refs)
	var buf [answerKeyBuf]byte
	key, ok := appendAnswerKey(buf[:0], kind, id, refs, sel.match.Group, extra, &sel.req)
	if ok {
		if out, hit := s.answers.get(sel.snap, key); hit {
			return out, nil
		}
	}
	out, err := render(func() map[string]any { return sel.varsWith(extra) })
	if err != nil {
		return nil, err
	}
	if ok {
		return s.answers.put(sel.snap, key, out), nil
	}
	return newCachedAnswer(out), nil
}

// Header values assigned without http.Header.Set's canonicalisation and
// slice per request; they are never modified in place.
var (
	contentTypeText = []string{"text/plain; charset=utf-8"}
	contentTypeJSON = []string{"application/json"}
)

func (s *Server) ipxe(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	w.Header()["Content-Type"] = contentTypeText
	if sel.machine != nil && sel.machine.State == matchbox.StateProvisioned {
		sel.event = matchbox.EventIPXE + ".boot_disk"
		writeAnswer(w, ipxeExit)
		return http.StatusOK, nil
	}
	return s.renderBoot(w, sel, ipxeTemplate)
}

func (s *Server) grub(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	w.Header()["Content-Type"] = contentTypeText
	return s.renderBoot(w, sel, grubTemplate)
}

func (s *Server) renderBoot(w http.ResponseWriter, sel *selection, t *template.Template) (int, error) {
	p := sel.match.Profile
	refs := sel.snap.ArgsRefs(p.ID)
	out, err := s.answer(sel, t.Name(), p.ID, refs, func(data func() map[string]any) ([]byte, error) {
		b := p.Boot
		args, err := sel.snap.BootArgs(p.ID, data)
		if err != nil {
			return nil, err
		}
		b.Args = args
		var out bytes.Buffer
		if err := t.Execute(&out, b); err != nil {
			return nil, fmt.Errorf("render %s script: %w", t.Name(), err)
		}
		return out.Bytes(), nil
	})
	if err != nil {
		return http.StatusInternalServerError, err
	}
	writeAnswer(w, out)
	return http.StatusOK, nil
}

func (s *Server) ignition(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	id := sel.match.Profile.IgnitionID
	if id == "" {
		return http.StatusNotFound, fmt.Errorf("profile %q has no ignition_id", sel.match.Profile.ID)
	}
	out, err := s.answer(sel, "ignition", id, sel.snap.TemplateRefs(matchbox.TemplateIgnition, id), func(data func() map[string]any) ([]byte, error) {
		return sel.snap.RenderIgnition(id, data())
	})
	if err != nil {
		return http.StatusInternalServerError, err
	}
	w.Header()["Content-Type"] = contentTypeJSON
	writeAnswer(w, out)
	return http.StatusOK, nil
}

func (s *Server) generic(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	id := sel.match.Profile.GenericID
	if id == "" {
		return http.StatusNotFound, fmt.Errorf("profile %q has no generic_id", sel.match.Profile.ID)
	}
	out, err := s.answer(sel, "generic", id, sel.snap.TemplateRefs(matchbox.TemplateGeneric, id), func(data func() map[string]any) ([]byte, error) {
		return sel.snap.RenderGeneric(id, data())
	})
	if err != nil {
		return http.StatusInternalServerError, err
	}
	w.Header()["Content-Type"] = contentTypeText
	writeAnswer(w, out)
	return http.StatusOK, nil
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request, sel *selection) (int, error) {
	data := sel.vars(nil)
	w.Header()["Content-Type"] = contentTypeText
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

// ipxeExit is ipxeExitScript as an answer.
var ipxeExit = newCachedAnswer([]byte(ipxeExitScript))

// writeAnswer writes an answer in one write, with its Content-Length.
func writeAnswer(w http.ResponseWriter, a *cachedAnswer) {
	w.Header()["Content-Length"] = a.length
	w.Write(a.body)
}
