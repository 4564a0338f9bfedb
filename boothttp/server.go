// Package boothttp serves the HTTP boot endpoints machines fetch while they
// network-boot: the iPXE chain script, iPXE and GRUB configs, first-boot
// configs (Ignition, generic templates, metadata) and OS assets. The paths,
// query labels and template variables are those of matchbox v0.11.
package boothttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"matchbox/hardware"
	"matchbox/logclip"
	"matchbox/matchbox"
)

// MachineView is what the boot endpoints need to know of a machine.
type MachineView struct {
	ID        string
	State     matchbox.MachineState
	Labels    map[string]string
	Inventory *hardware.Inventory
}

// MachineLookup finds the machine a request comes from by its MAC or UUID.
type MachineLookup interface {
	LookupMachine(ctx context.Context, mac, uuid string) (MachineView, bool)
}

// EventSink takes boot events without blocking.
type EventSink interface {
	Record(ev matchbox.BootEvent) bool
}

// Lifecycle is the machine lifecycle as the boot endpoints use it;
// lifecycle.Service implements it. It is the one way the boot endpoints
// learn variables they cannot compute themselves (the discovery agent's
// identity) and tell of answers that move a machine on.
type Lifecycle interface {
	// TemplateVars returns the variables a machine's templates get beside
	// its group's metadata and the request's labels: the discovery
	// agent's machine_id, agent_token and matchbox_url. id and state are
	// the requesting machine's, empty for a machine not known yet (mac,
	// possibly empty, names it then); host is the Host the request
	// addressed; uses names the variables the template to render may read
	// (nil: all), so that those it does not read need not be computed. It
	// is called only for answers rendered from templates.
	TemplateVars(ctx context.Context, id string, state matchbox.MachineState, mac, host string, uses func(name string) bool) map[string]any
	// Served is told of every successful answer of a selecting endpoint
	// to a known machine on the boot network: its id and state when the
	// request came, the endpoint's event type (matchbox.EventIgnition,
	// say) and the profile served.
	Served(ctx context.Context, id string, state matchbox.MachineState, event string, p *matchbox.Profile)
	// Complete is the installed system's completion callback (POST
	// /provisioned?machine=ID&token=T): it marks the machine provisioned.
	Complete(ctx context.Context, machineID, token string) error
}

// Config configures the boot endpoints.
type Config struct {
	// Snapshot returns the current catalog; required.
	Snapshot func() *matchbox.Snapshot
	// Machines looks up machines for hardware facts, stored labels and
	// state; nil treats every machine as unknown.
	Machines MachineLookup
	// Events receives boot events; nil records none.
	Events EventSink
	// AssetsDir is served under /assets/; empty disables it.
	AssetsDir string
	// Lifecycle adds template variables and is told of successful
	// answers; nil adds none.
	Lifecycle Lifecycle
	// Metrics collects request metrics; optional.
	Metrics *Metrics
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// BootNetworks are the client networks whose requests are observed:
	// recorded on timelines (creating machines) and told to the
	// lifecycle. Requests from elsewhere are answered but change nothing.
	// Empty observes every client.
	BootNetworks []netip.Prefix
	// RepeatInterval is how long a known machine's requests answered as
	// its last recorded one are counted instead of recorded (0:
	// DefaultRepeatInterval; negative: every request is recorded). Run
	// RunRepeats to write the counts when their interval is over.
	RepeatInterval time.Duration
}

// Server serves the boot endpoints.
type Server struct {
	cfg     Config
	log     *slog.Logger
	assets  *os.Root
	answers renderCache
	repeats *repeats // nil: every request recorded
	// selections are selections free for reuse (see getSelection).
	selections sync.Pool
	// bootScript is bootIPXEScript, written without a conversion per
	// request.
	bootScript *cachedAnswer
}

// New returns the boot endpoints' server.
func New(cfg Config) (*Server, error) {
	if cfg.Snapshot == nil {
		return nil, errors.New("boot server: no snapshot source")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, bootScript: newCachedAnswer([]byte(bootIPXEScript))}
	s.answers.current = cfg.Snapshot
	if cfg.Events != nil && cfg.RepeatInterval >= 0 {
		if cfg.RepeatInterval == 0 {
			cfg.RepeatInterval = DefaultRepeatInterval
		}
		s.repeats = newRepeats(cfg.RepeatInterval)
	}
	if cfg.AssetsDir != "" {
		root, err := os.OpenRoot(cfg.AssetsDir)
		if err != nil {
			return nil, fmt.Errorf("boot server: open assets dir: %w", err)
		}
		s.assets = root
	}
	return s, nil
}

// Close releases the assets directory.
func (s *Server) Close() error {
	if s.assets != nil {
		return s.assets.Close()
	}
	return nil
}

// route is a boot endpoint: its handler and its name in metrics.
type route struct {
	endpoint string
	h        http.Handler
	ok       prometheus.Counter // requests answered 200; nil without metrics
}

// routes returns the boot endpoints by exact path, and the assets route
// (nil without an assets directory) for paths under /assets/.
func (s *Server) routes() (map[string]*route, *route) {
	bootScript := s.route("boot.ipxe", http.HandlerFunc(s.bootIPXE))
	routes := map[string]*route{
		"/boot.ipxe":   bootScript,
		"/boot.ipxe.0": bootScript,
	}
	for name, h := range s.selectingHandlers() {
		routes["/"+name] = s.route(name, h)
	}
	var assets *route
	if s.assets != nil {
		assets = s.route("assets", http.StripPrefix("/assets", http.HandlerFunc(s.asset)))
	}
	return routes, assets
}

func (s *Server) route(endpoint string, h http.Handler) *route {
	rt := &route{endpoint: endpoint, h: h}
	if s.cfg.Metrics != nil {
		// Looked up once: the common answer's counter.
		rt.ok = s.cfg.Metrics.requests.WithLabelValues(endpoint, "200")
	}
	return rt
}

// selectingHandlers returns the endpoints that select a group, by name
// (ipxe, grub, ignition, generic, metadata), without instrumentation.
func (s *Server) selectingHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"ipxe":     s.selecting(matchbox.EventIPXE, s.ipxe),
		"grub":     s.selecting(matchbox.EventGRUB, s.grub),
		"ignition": s.selecting(matchbox.EventIgnition, s.ignition),
		"generic":  s.selecting(matchbox.EventGeneric, s.generic),
		"metadata": s.selecting(matchbox.EventMetadata, s.metadata),
	}
}

// Handler returns the boot endpoints alone: Front with nothing behind it.
func (s *Server) Handler() http.Handler {
	return s.Front(http.NotFoundHandler())
}

// Front returns a handler that answers the boot endpoints itself, by exact
// path, and passes every other request to next. The boot endpoints are the
// hot path of a provisioning network; this keeps a router's pattern matching
// off it. Other methods than GET and HEAD get 405. Each answer is counted
// by endpoint and status and logged (see logRequest) through one wrapper
// of the response writer.
func (s *Server) Front(next http.Handler) http.Handler {
	routes, assets := s.routes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == provisionedPath && s.cfg.Lifecycle != nil {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			s.provisioned(sw, r)
			s.logRequest(sw, r, start)
			return
		}
		rt, ok := routes[r.URL.Path]
		if !ok && assets != nil && strings.HasPrefix(r.URL.Path, "/assets/") {
			rt, ok = assets, true
		}
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, start: time.Now()}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			sw.Header().Set("Allow", "GET, HEAD")
			http.Error(sw, "method not allowed", http.StatusMethodNotAllowed)
		} else {
			rt.h.ServeHTTP(sw, r)
			s.count(rt, sw.status)
		}
		s.logRequest(sw, r, sw.start)
	})
}

// count counts an endpoint's answer by status code.
func (s *Server) count(rt *route, status int) {
	if rt.ok == nil {
		return
	}
	if status == 0 || status == http.StatusOK {
		rt.ok.Inc()
		return
	}
	s.cfg.Metrics.requests.WithLabelValues(rt.endpoint, strconv.Itoa(status)).Inc()
}

// logRequest logs an answered request: method, path, status, client
// address and duration since start. A success is logged at DEBUG (every
// firmware fetch would flood INFO), a 4xx (the client's or the catalog's
// doing) at INFO, a 5xx at WARN (its cause is logged at ERROR where it
// happened). The path comes from the client: it is cut to logclip.Max
// bytes.
func (s *Server) logRequest(sw *statusWriter, r *http.Request, start time.Time) {
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	lvl := slog.LevelDebug
	switch {
	case status >= 500:
		lvl = slog.LevelWarn
	case status >= 400:
		lvl = slog.LevelInfo
	}
	if !s.log.Enabled(r.Context(), lvl) {
		return
	}
	s.log.Log(r.Context(), lvl, "boot request", "method", r.Method, "path", logclip.String(r.URL.Path),
		"status", status, "remote", r.RemoteAddr, "duration", time.Since(start))
}

const bootIPXEScript = "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n"

func (s *Server) bootIPXE(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = contentTypeText
	writeAnswer(w, s.bootScript)
}

// selection is what the selecting middleware found for a request.
type selection struct {
	lc      Lifecycle // nil: no extra template variables
	snap    *matchbox.Snapshot
	match   matchbox.Match
	machine *MachineView
	req     matchbox.Request
	// r and labels (the request's, with the machine's stored labels) give
	// the lifecycle's template variables, computed only when a template
	// names them (see selection.extraVars).
	r      *http.Request
	labels matchbox.Labels
	event  string
	at     time.Time // when the request came
	// query is the map the request's labels are parsed into, kept with
	// the selection across requests (see getSelection).
	query matchbox.Labels
	// observed is false for requests that must change nothing: renders,
	// clients outside the boot networks, requests naming no machine.
	observed bool
}

// maxPooledLabels bounds the labels map a pooled selection keeps: a
// request with more query keys leaves its map to the collector rather
// than keep it large.
const maxPooledLabels = 16

// getSelection returns an empty selection, with an empty map for the
// request's labels, reused from an earlier request when one is free.
func (s *Server) getSelection() *selection {
	if sel, ok := s.selections.Get().(*selection); ok {
		return sel
	}
	return &selection{query: make(matchbox.Labels, 4)}
}

// putSelection returns sel for reuse once its request is answered: nothing
// of a selection (its labels map included) outlives the request.
func (s *Server) putSelection(sel *selection) {
	q := sel.query
	if len(q) > maxPooledLabels {
		q = make(matchbox.Labels, 4)
	} else {
		clear(q)
	}
	*sel = selection{query: q}
	s.selections.Put(sel)
}

type selectHandler func(w http.ResponseWriter, r *http.Request, sel *selection) (status int, err error)

// selecting resolves the request's labels and machine, selects its group
// and profile, calls next, and records the outcome as a boot event.
func (s *Server) selecting(event string, next selectHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request's arrival: Front's, read once per request.
		var start time.Time
		if sw, ok := w.(*statusWriter); ok {
			start = sw.start
		} else {
			start = time.Now()
		}
		sel := s.getSelection()
		defer s.putSelection(sel)
		labels := sel.query
		badMAC := labels.AddRawQuery(r.URL.RawQuery)
		if badMAC != nil {
			s.log.WarnContext(r.Context(), "ignoring unparsable MAC label", "err", badMAC, "remote", r.RemoteAddr)
		}
		sel.lc, sel.snap, sel.event, sel.at = s.cfg.Lifecycle, s.cfg.Snapshot(), event, start
		sel.req = matchbox.Request{Labels: labels, RawQuery: r.URL.RawQuery}
		sel.observed = s.observed(r, labels)
		if out := renderOutOf(r.Context()); out != nil {
			defer func() { out.Group, out.Profile = sel.match.Group, sel.match.Profile }()
		}
		var inv *hardware.Inventory
		if s.cfg.Machines != nil {
			if m, ok := s.cfg.Machines.LookupMachine(r.Context(), labels.MAC(), labels["uuid"]); ok {
				sel.machine = &m
				inv = m.Inventory
				if len(m.Labels) > 0 {
					merged := make(matchbox.Labels, len(labels)+len(m.Labels))
					for k, v := range m.Labels {
						merged[k] = v
					}
					for k, v := range labels {
						merged[k] = v
					}
					labels = merged
				}
			}
		}
		match, err := sel.snap.Select(labels, inv)
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.matchSeconds.Observe(time.Since(start).Seconds())
		}
		if errors.Is(err, matchbox.ErrMissingProfile) {
			// A dangling reference: the group exists, its profile not (yet).
			s.log.WarnContext(r.Context(), "selected group names a missing profile", "path", r.URL.Path, "group", match.Group.ID, "profile", match.Group.Profile, "labels", "{"+labels.String()+"}", "remote", r.RemoteAddr)
			sel.match = matchbox.Match{Group: match.Group}
			s.record(r.Context(), sel, http.StatusNotFound, err.Error())
			http.Error(w, oneLine(err.Error()), http.StatusNotFound)
			return
		}
		if err != nil {
			s.log.InfoContext(r.Context(), "no group matches", "path", r.URL.Path, "labels", "{"+labels.String()+"}", "remote", r.RemoteAddr)
			s.record(r.Context(), sel, http.StatusNotFound, "no group matches")
			http.Error(w, "no group matches labels "+"{"+labels.String()+"}", http.StatusNotFound)
			return
		}
		sel.match = match
		sel.r, sel.labels = r, labels
		status, err := next(w, r, sel)
		if errors.Is(err, matchbox.ErrMissingTemplate) {
			// A dangling reference: the profile names a template not (yet) written.
			status = http.StatusNotFound
			s.log.WarnContext(r.Context(), "profile names a missing template", "path", r.URL.Path, "group", match.Group.ID, "profile", match.Profile.ID, "labels", "{"+labels.String()+"}", "err", err)
			s.record(r.Context(), sel, status, err.Error())
			http.Error(w, oneLine(fmt.Sprintf("profile %q: %v", match.Profile.ID, err)), status)
			return
		}
		if err != nil {
			// A 4xx is the request's or the catalog's doing (a profile
			// without the config asked for): WARN; a 5xx is ours: ERROR.
			lvl := slog.LevelWarn
			if status >= 500 {
				lvl = slog.LevelError
			}
			s.log.Log(r.Context(), lvl, "boot endpoint failed", "status", status, "path", r.URL.Path, "remote", r.RemoteAddr, "group", match.Group.ID, "profile", match.Profile.ID, "labels", "{"+labels.String()+"}", "err", err)
			s.record(r.Context(), sel, status, err.Error())
			http.Error(w, oneLine(err.Error()), status)
			return
		}
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.DebugContext(r.Context(), "served", "path", r.URL.Path, "group", match.Group.ID, "profile", match.Profile.ID, "labels", "{"+labels.String()+"}")
		}
		s.record(r.Context(), sel, status, "")
		if s.cfg.Lifecycle != nil && sel.observed && sel.machine != nil && status == http.StatusOK {
			s.cfg.Lifecycle.Served(r.Context(), sel.machine.ID, sel.machine.State, sel.event, match.Profile)
		}
	})
}

// firstSyncTimeout bounds how long the answer to a machine's first request
// waits for its record to be written.
const firstSyncTimeout = 2 * time.Second

// eventSyncer is an EventSink that can wait until the events queued so
// far are written (store.Recorder).
type eventSyncer interface {
	Sync(ctx context.Context) error
}

// record queues the request's event. The first request of a machine not
// known yet waits (up to firstSyncTimeout) until its event, and so the
// machine it discovers, is written, so that the machine exists by the time
// the answer is complete: `curl` then `matchbox machine bmc set MAC` works.
func (s *Server) record(ctx context.Context, sel *selection, status int, problem string) {
	if s.cfg.Events == nil || !sel.observed {
		return
	}
	mac := sel.req.Labels.MAC()
	ev := matchbox.BootEvent{MAC: mac, UUID: sel.req.Labels["uuid"], Type: sel.event, Outcome: matchbox.Outcome{Status: status, Error: problem}}
	if sel.machine != nil {
		ev.MachineID = sel.machine.ID
	} else if mac == "" {
		return // nothing names the machine
	}
	if sel.match.Group != nil {
		ev.Outcome.Group = sel.match.Group.ID
		ev.Outcome.Profile = sel.match.Group.Profile
	}
	if sel.machine != nil {
		if s.repeats != nil {
			fold, flush := s.repeats.observe(&ev, sel.machine.State, sel.at)
			if flush != nil {
				s.cfg.Events.Record(*flush)
			}
			if fold {
				return
			}
		}
		s.cfg.Events.Record(ev)
		return
	}
	if !s.cfg.Events.Record(ev) {
		return
	}
	if sy, ok := s.cfg.Events.(eventSyncer); ok {
		ctx, cancel := context.WithTimeout(ctx, firstSyncTimeout)
		defer cancel()
		if err := sy.Sync(ctx); err != nil {
			s.log.WarnContext(ctx, "first boot request: its machine's record is not written yet", "mac", mac, "err", err)
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Paths returns the boot endpoints' exact paths (/boot.ipxe, /ipxe,
// /ignition, ...), without /assets/: the paths whose answers v0.11 signs.
func (s *Server) Paths() []string {
	routes, _ := s.routes()
	paths := make([]string, 0, len(routes))
	for p := range routes {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}
