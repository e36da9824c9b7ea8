package e2ee

import (
	"context"
	"encoding/json/jsontext"
	"errors"
	"slices"
	"strconv"

	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// SendToDeviceRequest is the body of PUT /sendToDevice/{eventType}/{txnId}.
type SendToDeviceRequest struct {
	Messages map[string]map[string]jsontext.Value `json:"messages"`
}

// errInboxFull is the answer when a named device's inbox is full: the device has not
// synced for a long time, and new messages wait until it does.
func errInboxFull(userID, deviceID string, limit int) error {
	return &mxerr.Error{Status: 429, Code: "M_LIMIT_EXCEEDED",
		Message: "The to-device inbox of " + userID + " device " + deviceID + " is full (" + strconv.Itoa(limit) + " undelivered messages)"}
}

// SendToDevice puts one message per target device in its inbox, all at one stream
// position, and wakes the recipients' /sync. A repeated transaction ID of the same device
// sends nothing again. The device ID "*" means all of a user's devices; devices that do not
// exist get nothing, as in Synapse. A named device whose inbox is full refuses the whole
// request; with "*", full inboxes are skipped (so one dead device cannot block the others).
func (s *Service) SendToDevice(ctx context.Context, sender, senderDevice, evType, txnID string, req SendToDeviceRequest) error {
	if evType == "" || len(evType) > 255 {
		return mxerr.InvalidParam("Invalid event type")
	}
	if txnID == "" || len(txnID) > 255 {
		return mxerr.InvalidParam("Invalid transaction ID")
	}
	if req.Messages == nil {
		return mxerr.BadJSON("messages is required")
	}
	total := 0
	var local []string
	for u, byDevice := range req.Messages {
		server := serverOf(u)
		if server == "" {
			return errInvalidUser(u)
		}
		for d, content := range byDevice {
			if content.Kind() != '{' {
				return mxerr.BadJSON("Each message must be a JSON object")
			}
			if len(content) > MaxToDeviceMessage {
				return mxerr.TooLarge("A to-device message may be at most " + strconv.Itoa(MaxToDeviceMessage) + " bytes")
			}
			if d == "" || len(d) > MaxKeyID {
				return mxerr.InvalidParam("Invalid device ID " + quote(d))
			}
			total++
		}
		if total > MaxToDeviceMessages {
			return mxerr.InvalidParam("At most " + strconv.Itoa(MaxToDeviceMessages) + " messages per request")
		}
		if server != s.serverName {
			s.log.Info("dropping to-device messages for a remote user (no federation yet)", "sender", sender, "user", u, "type", evType)
			continue
		}
		local = append(local, u)
	}
	slices.Sort(local)
	var recipients []string
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		if err := tx.PutToDeviceTxn(ctx, sender, senderDevice, txnID); errors.Is(err, storage.ErrConflict) {
			return nil, nil // sent before
		} else if err != nil {
			return nil, err
		}
		var msgs []storage.ToDeviceMessage
		note := &live.E2EENote{ToDevice: map[string][]string{}}
		for _, u := range local {
			targets, err := s.targets(ctx, tx, u, req.Messages[u])
			if err != nil {
				return nil, err
			}
			for _, t := range targets {
				msgs = append(msgs, storage.ToDeviceMessage{UserID: u, DeviceID: t.device, Sender: sender, Type: evType, Content: t.content})
				note.ToDevice[u] = append(note.ToDevice[u], t.device)
			}
		}
		if len(msgs) > MaxToDeviceMessages {
			return nil, mxerr.InvalidParam("At most " + strconv.Itoa(MaxToDeviceMessages) + " messages per request")
		}
		if len(msgs) == 0 {
			return nil, nil
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		for i := range msgs {
			msgs[i].Pos = pos
		}
		if err := tx.PutToDevice(ctx, msgs); err != nil {
			return nil, err
		}
		for u := range note.ToDevice {
			recipients = append(recipients, u)
		}
		note.Messages = msgs
		return []live.Published{{Item: live.Item{Pos: pos}, Users: recipients, E2EE: note}}, nil
	})
	if err != nil {
		return internal(err)
	}
	return nil
}

type target struct {
	device  string
	content []byte
}

// targets resolves one user's messages to existing devices with room in their inbox.
func (s *Service) targets(ctx context.Context, tx storage.Tx, userID string, byDevice map[string]jsontext.Value) ([]target, error) {
	devices, err := tx.Devices(ctx, userID)
	if err != nil {
		return nil, err
	}
	exists := make(map[string]bool, len(devices))
	ids := make([]string, len(devices))
	for i, d := range devices {
		exists[d.ID], ids[i] = true, d.ID
	}
	counts, err := tx.ToDeviceCounts(ctx, userID, ids)
	if err != nil {
		return nil, err
	}
	var out []target
	named := map[string]bool{}
	for d, content := range byDevice {
		if d == "*" || !exists[d] {
			continue
		}
		if counts[d] >= s.inboxLimit {
			return nil, errInboxFull(userID, d, s.inboxLimit)
		}
		named[d] = true
		out = append(out, target{d, content})
	}
	if all, ok := byDevice["*"]; ok {
		for _, d := range ids {
			if named[d] {
				continue // a message for the device itself wins over the one for all
			}
			if counts[d] >= s.inboxLimit {
				s.log.Warn("to-device inbox full; message for all devices skipped", "user", userID, "device", d)
				continue
			}
			out = append(out, target{d, all})
		}
	}
	slices.SortFunc(out, func(a, b target) int {
		if a.device < b.device {
			return -1
		} else if a.device > b.device {
			return 1
		}
		return 0
	})
	return out, nil
}
