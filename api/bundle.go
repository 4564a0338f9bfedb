package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"

	"matchbox/api/wire"
	"matchbox/matchbox/datadir"
)

// MaxBundleFiles is the most files a bundle may hold.
const MaxBundleFiles = 10000

// decodePlanRequest reads the JSON body of a plan or apply request.
func decodePlanRequest(r io.Reader) (*wire.PlanRequest, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var req wire.PlanRequest
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, jsonField(err), "request body: invalid JSON: %v", err)
	}
	if dec.More() {
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "", "request body: unexpected data after the JSON document")
	}
	if req.Files == nil {
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "files", `field files is required: {"files": {"profiles/NAME.yaml": "..."}}`)
	}
	return &req, nil
}

// DecodeBundle reads the profiles, groups and templates of a bundle, with
// every problem located at file:line. File paths must be
// profiles/NAME, groups/NAME, ignition/NAME or generic/NAME.
func DecodeBundle(b wire.Bundle) (*datadir.Content, error) {
	if len(b.Files) > MaxBundleFiles {
		return nil, errorf(http.StatusBadRequest, CodeInvalidBundle, "files", "the bundle holds %d files, more than %d", len(b.Files), MaxBundleFiles)
	}
	names := make([]string, 0, len(b.Files))
	for name := range b.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	files := make(map[string]string, len(names))
	var problems []string
	for _, name := range names {
		if err := checkBundlePath(name); err != nil {
			problems = append(problems, fmt.Sprintf("%q: %v", name, err))
			continue
		}
		files[name] = b.Files[name]
	}
	if len(problems) > 0 {
		e := errorf(http.StatusBadRequest, CodeInvalidBundle, firstFile(problems), "invalid bundle: %s", strings.Join(problems, "; "))
		e.detail.Problems = problems
		return nil, e
	}
	content, err := datadir.ReadFiles(files)
	if err != nil {
		problems = splitJoined(err)
		e := errorf(http.StatusBadRequest, CodeInvalidBundle, "", "invalid bundle: %s", strings.Join(problems, "; "))
		var fe *datadir.FileError
		if errors.As(err, &fe) {
			e.detail.Field = fe.File
		}
		e.detail.Problems = problems
		return nil, e
	}
	return content, nil
}

// checkBundlePath checks that name is folder/file with a known folder.
func checkBundlePath(name string) error {
	if !fs.ValidPath(name) || path.Clean(name) != name || name == "." {
		return errors.New("not a clean relative slash-separated path")
	}
	dir, file := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if _, ok := datadir.KindOf(dir); !ok {
		return errors.New("want profiles/NAME, groups/NAME, ignition/NAME or generic/NAME")
	}
	if file == "" || strings.HasPrefix(file, ".") {
		return errors.New("hidden or empty file name")
	}
	return nil
}

// splitJoined lists the messages of an errors.Join result.
func splitJoined(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// firstFile extracts the quoted file name a path problem starts with.
func firstFile(problems []string) string {
	if len(problems) == 0 {
		return ""
	}
	var name string
	if _, err := fmt.Sscanf(problems[0], "%q", &name); err == nil {
		return name
	}
	return ""
}
