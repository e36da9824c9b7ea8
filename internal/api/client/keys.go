package client

import (
	"encoding/json/jsontext"
	"errors"
	"net/http"

	"porthole/internal/auth"
	"porthole/internal/e2ee"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/stream"
)

// The end-to-end encryption endpoints: keys, cross-signing, to-device messages and key
// backups. The e2ee service checks and stores; these parse and answer.

func (a *API) uploadKeys(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req e2ee.UploadRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	counts, err := a.e2ee.Upload(r.Context(), s.UserID, s.DeviceID, req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"one_time_key_counts": counts})
}

func (a *API) queryKeys(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req e2ee.QueryRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	resp, err := a.e2ee.Query(r.Context(), s.UserID, req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}

func (a *API) claimKeys(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req e2ee.ClaimRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	resp, err := a.e2ee.Claim(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}

func (a *API) keyChanges(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	from, err := tokenParam(r, "from")
	if err != nil {
		return err
	}
	if from == nil {
		return mxerr.MissingParam("Missing from token")
	}
	if _, err := tokenParam(r, "to"); err != nil {
		return err
	}
	changed, left, err := a.sync.KeyChanges(r.Context(), s, *from)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string][]string{"changed": changed, "left": left})
}

func (a *API) uploadCrossSigning(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req struct {
		e2ee.CrossSigningRequest
		Auth *auth.AuthDict `json:"auth"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	err := a.e2ee.UploadCrossSigning(r.Context(), s.UserID, req.CrossSigningRequest, false)
	if errors.Is(err, e2ee.ErrAuthRequired) {
		// Replacing keys needs the password, as Synapse asks.
		if err := a.requirePassword(r, s, req.Auth, "device_signing_upload"); err != nil {
			return err
		}
		err = a.e2ee.UploadCrossSigning(r.Context(), s.UserID, req.CrossSigningRequest, true)
	}
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) uploadSignatures(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req map[string]map[string]jsontext.Value
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	failures, err := a.e2ee.UploadSignatures(r.Context(), s.UserID, req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"failures": failures})
}

// e2eeBody is the body limit of the endpoints that carry many keys at once.
func (a *API) e2eeBody(limit int64) int64 { return max(a.cfg.MaxBody, limit) }

func (a *API) sendToDevice(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req e2ee.SendToDeviceRequest
	if err := httpx.ReadJSON(r, a.e2eeBody(e2ee.MaxToDeviceBody), &req); err != nil {
		return err
	}
	if err := a.e2ee.SendToDevice(r.Context(), s.UserID, s.DeviceID, r.PathValue("eventType"), r.PathValue("txnId"), req); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) createBackup(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req e2ee.BackupVersionRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	version, err := a.e2ee.CreateBackup(r.Context(), s.UserID, req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"version": version})
}

func (a *API) getBackup(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	info, err := a.e2ee.Backup(r.Context(), s.UserID, r.PathValue("version"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, info)
}

func (a *API) updateBackup(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req e2ee.BackupVersionRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := a.e2ee.UpdateBackup(r.Context(), s.UserID, r.PathValue("version"), req); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) deleteBackup(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if err := a.e2ee.DeleteBackup(r.Context(), s.UserID, r.PathValue("version")); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

// backupVersion reads the required version query parameter of /room_keys/keys.
func backupVersion(r *http.Request) (string, error) {
	v, ok := query(r, "version")
	if !ok || v == "" {
		return "", mxerr.MissingParam("Missing version parameter")
	}
	return v, nil
}

func (a *API) putRoomKeys(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	version, err := backupVersion(r)
	if err != nil {
		return err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	limit := a.e2eeBody(e2ee.MaxBackupBody)
	var rooms map[string]map[string]e2ee.KeyData
	switch {
	case sessionID != "":
		var k e2ee.KeyData
		if err := httpx.ReadJSON(r, limit, &k); err != nil {
			return err
		}
		rooms = map[string]map[string]e2ee.KeyData{roomID: {sessionID: k}}
	case roomID != "":
		var body struct {
			Sessions map[string]e2ee.KeyData `json:"sessions"`
		}
		if err := httpx.ReadJSON(r, limit, &body); err != nil {
			return err
		}
		if body.Sessions == nil {
			return mxerr.BadJSON("sessions is required")
		}
		rooms = map[string]map[string]e2ee.KeyData{roomID: body.Sessions}
	default:
		var body struct {
			Rooms map[string]struct {
				Sessions map[string]e2ee.KeyData `json:"sessions"`
			} `json:"rooms"`
		}
		if err := httpx.ReadJSON(r, limit, &body); err != nil {
			return err
		}
		if body.Rooms == nil {
			return mxerr.BadJSON("rooms is required")
		}
		rooms = map[string]map[string]e2ee.KeyData{}
		for id, room := range body.Rooms {
			if room.Sessions == nil {
				return mxerr.BadJSON("Each room needs sessions")
			}
			rooms[id] = room.Sessions
		}
	}
	resp, err := a.e2ee.PutKeys(r.Context(), s.UserID, version, rooms)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}

func (a *API) getRoomKeys(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	version, err := backupVersion(r)
	if err != nil {
		return err
	}
	resp, err := a.e2ee.Keys(r.Context(), s.UserID, version, r.PathValue("roomId"), r.PathValue("sessionId"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}

func (a *API) deleteRoomKeys(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	version, err := backupVersion(r)
	if err != nil {
		return err
	}
	resp, err := a.e2ee.DeleteKeys(r.Context(), s.UserID, version, r.PathValue("roomId"), r.PathValue("sessionId"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}

// toDeviceAck reads the to-device position a /sync since token acknowledges.
func toDeviceAck(r *http.Request) *stream.Pos {
	raw, _ := query(r, "since")
	if p, ok := stream.ToDeviceAck(raw); ok {
		return &p
	}
	return nil
}
