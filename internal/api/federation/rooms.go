package federation

import (
	"encoding/json"
	"net/http"
	"time"

	"porthole/internal/federation"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
)

// send is PUT /_matrix/federation/v1/send/{txnId}: a transaction of PDUs (and EDUs,
// not handled yet) from another server.
func (a *API) send(w http.ResponseWriter, r *http.Request, req *Request) error {
	var txn federation.Transaction
	if err := httpx.DecodeObject(req.Body, &txn); err != nil {
		return err
	}
	body, err := a.inbound.Receive(r.Context(), req.Origin, r.PathValue("txnId"), txn)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, http.StatusOK, body)
	return nil
}

// pdus writes a transaction-shaped answer: this server as origin, now, and the PDUs.
func (a *API) pdus(w http.ResponseWriter, pdus []json.RawMessage) error {
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"origin": a.cfg.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus})
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, req *Request) error {
	pdu, err := a.inbound.Event(r.Context(), req.Origin, r.PathValue("eventId"))
	if err != nil {
		return err
	}
	return a.pdus(w, []json.RawMessage{pdu})
}

func (a *API) stateIDs(w http.ResponseWriter, r *http.Request, req *Request) error {
	eventID := r.URL.Query().Get("event_id")
	if eventID == "" {
		return mxerr.MissingParam("event_id is required")
	}
	state, chain, err := a.inbound.StateIDs(r.Context(), req.Origin, r.PathValue("roomId"), eventID)
	if err != nil {
		return err
	}
	if chain == nil {
		chain = []string{}
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"pdu_ids": state, "auth_chain_ids": chain})
}

func (a *API) eventAuth(w http.ResponseWriter, r *http.Request, req *Request) error {
	chain, err := a.inbound.EventAuth(r.Context(), req.Origin, r.PathValue("roomId"), r.PathValue("eventId"))
	if err != nil {
		return err
	}
	if chain == nil {
		chain = []json.RawMessage{}
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"auth_chain": chain})
}
