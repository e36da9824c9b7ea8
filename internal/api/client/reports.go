package client

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"net/http"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/reports"
)

// SetReports gives the API the reports service. Call before serving.
func (a *API) SetReports(r *reports.Service) { a.reports = r }

func (a *API) reportEvent(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	raw, err := httpx.ReadBody(r, a.cfg.MaxBody)
	if err != nil {
		return err
	}
	var body struct {
		Reason jsontext.Value `json:"reason"`
		Score  jsontext.Value `json:"score"`
	}
	if err := httpx.DecodeObject(raw, &body); err != nil {
		return err
	}
	// As Synapse: a reason must be a string, and the score the spec used to have an integer.
	var reason string
	if body.Reason != nil && json.Unmarshal(body.Reason, &reason) != nil {
		return mxerr.BadJSON("Param 'reason' must be a string")
	}
	var score int64
	if body.Score != nil && json.Unmarshal(body.Score, &score) != nil {
		return mxerr.BadJSON("Param 'score' must be an integer")
	}
	if err := a.reports.ReportEvent(r.Context(), s, r.PathValue("roomId"), r.PathValue("eventId"), reason, raw); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

// reasonBody reads the body of a room or user report: a required string reason.
func (a *API) reasonBody(r *http.Request) (string, error) {
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return "", err
	}
	if body.Reason == nil {
		return "", mxerr.MissingParam("Missing param reason")
	}
	return *body.Reason, nil
}

func (a *API) reportRoom(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	reason, err := a.reasonBody(r)
	if err != nil {
		return err
	}
	if err := a.reports.ReportRoom(r.Context(), s, r.PathValue("roomId"), reason); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) reportUser(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	reason, err := a.reasonBody(r)
	if err != nil {
		return err
	}
	if err := a.reports.ReportUser(r.Context(), s, r.PathValue("userId"), reason); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}
