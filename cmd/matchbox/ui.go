package main

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"matchbox/api"
	"matchbox/hardware/facts"
	"matchbox/ui"
)

// registerUI serves the web console under /ui/ on the API's router r, where
// a serves the API: the console authenticates by the API's rules and acts
// through its handlers. A login lasts sessionTTL.
func (s *services) registerUI(r *mux.Router, a *api.API, sessionTTL time.Duration) error {
	c, err := ui.New(ui.Config{
		Machines:  s.store,
		Snapshot:  s.store.Snapshot,
		ParseFact: facts.ParseFact,
		BMCs:      s.lifecycle,
		Auth:      a,
		API:       r,
		Logger:    s.log,

		SessionTTL: sessionTTL,
	})
	if err != nil {
		return err
	}
	r.Handle("/ui", httpRedirect(ui.Prefix))
	r.PathPrefix(ui.Prefix).Handler(c)
	return nil
}

// httpRedirect redirects every request to target.
func httpRedirect(target string) http.Handler {
	return http.RedirectHandler(target, http.StatusMovedPermanently)
}
