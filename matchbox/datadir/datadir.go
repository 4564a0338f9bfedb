// Package datadir reads a matchbox data directory: profiles/ and groups/
// (JSON or YAML files), ignition/ and generic/ (templates). It reads the
// layout matchbox v0.11 used, unchanged, and reports bad input as
// file:line: what is wrong.
package datadir

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"matchbox/matchbox"
)

// Content is what a data directory holds.
type Content struct {
	Profiles  []Entry[matchbox.Profile]
	Groups    []Entry[matchbox.Group]
	Templates []Entry[matchbox.Template]
	// Warnings are accepted oddities (unknown fields, say).
	Warnings []string
}

// Entry is one object and the file it came from.
type Entry[T any] struct {
	Value T
	File  string // path relative to the data directory
}

// FileError is a problem in one file, at a line when known.
type FileError struct {
	File string
	Line int // 0 when unknown
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Folder returns the folder of a data directory that holds objects of
// kind k: profiles, groups, ignition or generic.
func Folder(k matchbox.Kind) string {
	switch k {
	case matchbox.KindProfile, matchbox.KindGroup:
		return string(k) + "s"
	}
	return string(k)
}

// Folders returns the folders of a data directory, in the order they are
// read: profiles, groups, ignition, generic.
func Folders() []string {
	var out []string
	for _, k := range matchbox.Kinds() {
		out = append(out, Folder(k))
	}
	return out
}

// KindOf returns the kind of objects folder holds; false for a folder that
// is not one of Folders.
func KindOf(folder string) (matchbox.Kind, bool) {
	for _, k := range matchbox.Kinds() {
		if Folder(k) == folder {
			return k, true
		}
	}
	return "", false
}

// Catalog returns the objects of c, without the files they came from, in
// the order c holds them.
func (c *Content) Catalog() matchbox.Catalog {
	var cat matchbox.Catalog
	for _, e := range c.Profiles {
		cat.Profiles = append(cat.Profiles, e.Value)
	}
	for _, e := range c.Groups {
		cat.Groups = append(cat.Groups, e.Value)
	}
	for _, e := range c.Templates {
		cat.Templates = append(cat.Templates, e.Value)
	}
	return cat
}

// Read reads the data directory dir. A missing sub-folder is empty; any bad
// file fails the whole read, with every problem listed.
func Read(dir string) (*Content, error) {
	return ReadFS(os.DirFS(dir))
}

// ReadFS reads a data directory from fsys.
func ReadFS(fsys fs.FS) (*Content, error) {
	return read(func(folder string) ([]string, error) { return listFiles(fsys, folder) },
		func(name string) ([]byte, error) { return fs.ReadFile(fsys, name) })
}

// ReadFiles reads a data directory given as its files: contents by path
// relative to the directory (folder/name, slash-separated), as a bundle
// holds them. Files outside the folders, in sub-folders of them, hidden or
// editor backups are ignored, as ReadFS ignores them.
func ReadFiles(files map[string]string) (*Content, error) {
	return read(func(folder string) ([]string, error) {
		var names []string
		for name := range files {
			dir, base := path.Split(name)
			if dir == folder+"/" && !skipped(base) {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		return names, nil
	}, func(name string) ([]byte, error) { return []byte(files[name]), nil })
}

// read reads a data directory whose folders list gives the files of
// (sorted, folder/name) and readFile reads.
func read(list func(folder string) ([]string, error), readFile func(name string) ([]byte, error)) (*Content, error) {
	c := &Content{}
	var errs []error
	for _, kind := range matchbox.Kinds() {
		names, err := list(Folder(kind))
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if kind == matchbox.KindProfile || kind == matchbox.KindGroup {
				ext := strings.ToLower(path.Ext(name))
				if ext != ".json" && ext != ".yaml" && ext != ".yml" {
					c.Warnings = append(c.Warnings, fmt.Sprintf("%s: skipped (not .json, .yaml or .yml)", name))
					continue
				}
			}
			data, err := readFile(name)
			if err != nil {
				errs = append(errs, &FileError{File: name, Err: err})
				continue
			}
			stem := strings.TrimSuffix(path.Base(name), path.Ext(name))
			switch kind {
			case matchbox.KindProfile:
				p, warns, err := DecodeProfile(data, name, stem)
				c.Warnings = append(c.Warnings, warns...)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				c.Profiles = append(c.Profiles, Entry[matchbox.Profile]{Value: *p, File: name})
			case matchbox.KindGroup:
				g, warns, err := DecodeGroup(data, name, stem)
				c.Warnings = append(c.Warnings, warns...)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				c.Groups = append(c.Groups, Entry[matchbox.Group]{Value: *g, File: name})
			default:
				base := path.Base(name)
				if err := matchbox.ValidateTemplateName(base); err != nil {
					errs = append(errs, &FileError{File: name, Err: err})
					continue
				}
				c.Templates = append(c.Templates, Entry[matchbox.Template]{
					Value: matchbox.Template{Kind: kind, Name: base, Content: string(data)},
					File:  name,
				})
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// skipped reports whether a file name is hidden or an editor backup.
func skipped(name string) bool { return strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") }

// listFiles returns the regular files directly in sub, sorted, skipping
// hidden files and editor backups.
func listFiles(fsys fs.FS, sub string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, sub)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/: %w", sub, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if skipped(n) {
			continue
		}
		if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
			full := sub + "/" + n
			if st, err := fs.Stat(fsys, full); err == nil && st.Mode().IsRegular() {
				names = append(names, full)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// DecodeProfile decodes a profile from JSON or YAML. file names the source in
// errors; defaultID is used when the document has no id.
func DecodeProfile(data []byte, file, defaultID string) (*matchbox.Profile, []string, error) {
	var p matchbox.Profile
	warns, err := decode(data, file, &p, profileFields)
	if err != nil {
		return nil, warns, err
	}
	if p.ID == "" {
		p.ID = defaultID
	}
	if err := matchbox.ValidateID("profile", p.ID); err != nil {
		return nil, warns, &FileError{File: file, Line: fieldLine(data, "id"), Err: err}
	}
	if err := p.ValidateLifecycle(); err != nil {
		field := "provisioning_timeout"
		if strings.Contains(err.Error(), "provisioned_by") {
			field = "provisioned_by"
		}
		return nil, warns, &FileError{File: file, Line: fieldLine(data, field), Err: err}
	}
	return &p, warns, nil
}

// DecodeGroup decodes a group from JSON or YAML and normalises its selector.
func DecodeGroup(data []byte, file, defaultID string) (*matchbox.Group, []string, error) {
	var g matchbox.Group
	warns, err := decode(data, file, &g, groupFields)
	if err != nil {
		return nil, warns, err
	}
	if g.ID == "" {
		g.ID = defaultID
	}
	if err := matchbox.NormalizeGroup(&g); err != nil {
		field := "selector"
		if g.Profile == "" {
			field = "profile"
		}
		return nil, warns, &FileError{File: file, Line: fieldLine(data, field), Err: err}
	}
	return &g, warns, nil
}

var (
	profileFields = map[string]bool{"id": true, "name": true, "boot": true, "ignition_id": true, "generic_id": true, "provisioned_by": true, "provisioning_timeout": true, "shipped": true}
	groupFields   = map[string]bool{"id": true, "name": true, "profile": true, "selector": true, "facts": true, "priority": true, "metadata": true, "auto_provision": true, "shipped": true}
)

// decode parses JSON (a document starting with '{') or YAML into v, with
// errors located at file:line. Unknown top-level fields are accepted with a
// warning, as older data directories carry fields this version ignores.
func decode(data []byte, file string, v any, known map[string]bool) ([]string, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, &FileError{File: file, Line: 1, Err: errors.New("file is empty")}
	}
	var keys []string
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(v); err != nil {
			return nil, jsonError(data, file, err)
		}
		if dec.More() {
			off := dec.InputOffset()
			return nil, &FileError{File: file, Line: lineAt(data, off), Err: errors.New("unexpected data after the JSON object")}
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err == nil {
			for k := range top {
				keys = append(keys, k)
			}
		}
	} else {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, yamlError(file, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			line := 1
			if len(doc.Content) > 0 {
				line = doc.Content[0].Line
			}
			return nil, &FileError{File: file, Line: line, Err: errors.New("expected a mapping of fields")}
		}
		if err := doc.Content[0].Decode(v); err != nil {
			return nil, yamlError(file, err)
		}
		for i := 0; i+1 < len(doc.Content[0].Content); i += 2 {
			keys = append(keys, doc.Content[0].Content[i].Value)
		}
	}
	var warns []string
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] {
			warns = append(warns, fmt.Sprintf("%s:%d: unknown field %q ignored", file, fieldLine(data, k), k))
		}
	}
	return warns, nil
}

func jsonError(data []byte, file string, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &FileError{File: file, Line: lineAt(data, syn.Offset), Err: fmt.Errorf("invalid JSON: %v", syn)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "document"
		}
		return &FileError{File: file, Line: lineAt(data, typ.Offset), Err: fmt.Errorf("field %s: cannot use a JSON %s as %s", field, typ.Value, typ.Type)}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &FileError{File: file, Line: lineAt(data, int64(len(data))), Err: errors.New("invalid JSON: unexpected end of file")}
	}
	return &FileError{File: file, Err: fmt.Errorf("invalid JSON: %w", err)}
}

// yamlError turns yaml.v3's "yaml: line N: msg" into file:N: msg.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		var line int
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			l, m := splitYAMLLine(e)
			if line == 0 {
				line = l
			}
			msgs = append(msgs, m)
		}
		return &FileError{File: file, Line: line, Err: errors.New(strings.Join(msgs, "; "))}
	}
	l, m := splitYAMLLine(strings.TrimPrefix(err.Error(), "yaml: "))
	return &FileError{File: file, Line: l, Err: fmt.Errorf("invalid YAML: %s", m)}
}

func splitYAMLLine(s string) (int, string) {
	var line int
	if n, _ := fmt.Sscanf(s, "line %d:", &line); n == 1 {
		if i := strings.Index(s, ":"); i >= 0 {
			return line, strings.TrimSpace(s[i+1:])
		}
	}
	return 0, s
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// fieldLine finds the line where a top-level field is written, best effort
// (0 when not found).
func fieldLine(data []byte, field string) int {
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, `"`+field+`"`) || strings.HasPrefix(t, field+":") {
			return i + 1
		}
	}
	return 0
}

// Hash returns a hex SHA-256 over the files Read would consider in dir
// (each folder's listed files: path, length and content), prefixed by
// salt. Two reads of directories hashing the same, by binaries passing the
// same salt, give the same content.
func Hash(dir, salt string) (string, error) {
	fsys := os.DirFS(dir)
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s\n", len(salt), salt)
	for _, kind := range matchbox.Kinds() {
		names, err := listFiles(fsys, Folder(kind))
		if err != nil {
			return "", fmt.Errorf("hash data directory %s: %w", dir, err)
		}
		for _, name := range names {
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				return "", fmt.Errorf("hash data directory %s: %w", dir, err)
			}
			fmt.Fprintf(h, "%d:%s\n%d:", len(name), name, len(data))
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
