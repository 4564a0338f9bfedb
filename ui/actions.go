package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"matchbox/api/wire"
	"matchbox/matchbox"
	"matchbox/store"
)

// backToMachine redirects to the machine page with a message.
func backToMachine(w http.ResponseWriter, r *http.Request, id, msg string) {
	http.Redirect(w, r, Prefix+"machines/"+url.PathEscape(id)+"?msg="+url.QueryEscape(msg), http.StatusSeeOther)
}

func (s *Server) provisionOne(w http.ResponseWriter, r *http.Request, u user) error {
	id := r.PathValue("id")
	if _, err := s.callAPI(r, u, http.MethodPost, "/machines/"+url.PathEscape(id)+"/provision", struct{}{}); err != nil {
		return err
	}
	backToMachine(w, r, id, "Provisioning started.")
	return nil
}

func (s *Server) power(w http.ResponseWriter, r *http.Request, u user) error {
	id := r.PathValue("id")
	action := r.PostForm.Get("action")
	switch action {
	case "on", "off", "cycle", "status":
	default:
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("power action %q: want on, off, cycle or status", action)}
	}
	body, err := s.callAPI(r, u, http.MethodPost, "/machines/"+url.PathEscape(id)+"/power", wire.PowerRequest{Action: action})
	if err != nil {
		return err
	}
	if action == "status" {
		var ps wire.PowerStatus
		if err := json.Unmarshal(body, &ps); err != nil {
			return fmt.Errorf("decode power status: %w", err)
		}
		backToMachine(w, r, id, "Power is "+ps.Power+".")
		return nil
	}
	backToMachine(w, r, id, "Power "+action+" sent.")
	return nil
}

func (s *Server) bootDevice(w http.ResponseWriter, r *http.Request, u user) error {
	id := r.PathValue("id")
	dev := r.PostForm.Get("device")
	if _, err := s.callAPI(r, u, http.MethodPost, "/machines/"+url.PathEscape(id)+"/bootdevice", wire.BootDeviceRequest{Device: dev}); err != nil {
		return err
	}
	backToMachine(w, r, id, "Next boot from "+dev+".")
	return nil
}

func (s *Server) setLabels(w http.ResponseWriter, r *http.Request, u user) error {
	id := r.PathValue("id")
	labels, err := parseLabels(r.PostForm.Get("labels"))
	if err != nil {
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	if labels == nil {
		labels = map[string]string{}
	}
	if _, err := s.callAPI(r, u, http.MethodPut, "/machines/"+url.PathEscape(id)+"/labels", wire.Labels{Labels: labels}); err != nil {
		return err
	}
	backToMachine(w, r, id, "Labels set.")
	return nil
}

func (s *Server) setState(w http.ResponseWriter, r *http.Request, u user) error {
	id := r.PathValue("id")
	state := matchbox.MachineState(r.PostForm.Get("state"))
	if _, err := s.callAPI(r, u, http.MethodPut, "/machines/"+url.PathEscape(id)+"/state", wire.StateChange{State: state}); err != nil {
		return err
	}
	backToMachine(w, r, id, "State set to "+string(state)+".")
	return nil
}

// confirmSample is how many machines a bulk confirmation names.
const confirmSample = 10

// provisionSelector provisions every machine whose labels include the
// form's: a first post shows how many that is and asks to confirm; the
// confirming post provisions them if the count still holds.
func (s *Server) provisionSelector(w http.ResponseWriter, r *http.Request, u user) error {
	raw := r.PostForm.Get("labels")
	labels, err := parseLabels(raw)
	if err != nil {
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	if len(labels) == 0 {
		return &httpError{status: http.StatusBadRequest, msg: "provisioning by selector needs at least one label"}
	}
	ms, err := s.cfg.Machines.ListMachines(r.Context(), store.MachineFilter{Label: labels})
	if err != nil {
		return err
	}
	if r.PostForm.Get("confirm") != "yes" || r.PostForm.Get("count") != strconv.Itoa(len(ms)) {
		var sample []string
		for i := 0; i < len(ms) && i < confirmSample; i++ {
			sample = append(sample, ms[i].ID)
		}
		data := map[string]any{"User": u, "Title": "Confirm provisioning", "Labels": raw, "Count": len(ms), "Sample": sample, "More": len(ms) - len(sample)}
		if r.PostForm.Get("confirm") == "yes" {
			data["Changed"] = r.PostForm.Get("count")
		}
		return s.render(w, "confirm", data)
	}
	body, err := s.callAPI(r, u, http.MethodPost, "/machines/provision", wire.ProvisionRequest{Selector: labels})
	if err != nil {
		return err
	}
	var ans wire.ProvisionAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("decode provisioning answer: %w", err)
	}
	s.log.InfoContext(r.Context(), "console bulk provisioning", "machines", len(ms), "succeeded", ans.Succeeded, "failed", ans.Failed)
	msg := fmt.Sprintf("Provisioning %d machines: %d started, %d failed.", len(ans.Outcomes), ans.Succeeded, ans.Failed)
	http.Redirect(w, r, Prefix+"?"+url.Values{"labels": {raw}, "msg": {msg}}.Encode(), http.StatusSeeOther)
	return nil
}
