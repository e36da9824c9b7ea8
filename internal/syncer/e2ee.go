package syncer

import (
	"context"
	"encoding/json/jsontext"
	"maps"
	"slices"

	"porthole/internal/auth"
	"porthole/internal/e2ee"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// toDeviceBatch is the most to-device messages one /sync carries (the spec's advice).
const toDeviceBatch = 100

// deviceListUpdates computes device_lists for userID over (since, to], from memory: the
// users sharing a room with userID (or userID themself) whose devices or keys changed,
// users who start sharing a room (all members of a newly joined room; members who join
// one), and users who stopped sharing every room, as Synapse reports them.
func (sy *Syncer) deviceListUpdates(ctx context.Context, userID string, ms []storage.Member, since, to stream.Pos) (changed, left []string, err error) {
	var rooms []*live.Room
	type roomMembership struct {
		room *live.Room
		m    storage.Member
	}
	var all []roomMembership
	for _, m := range ms {
		leftNow := (m.Membership == visibility.Leave || m.Membership == visibility.Ban) && m.Pos > since && m.Pos <= to
		if m.Membership != visibility.Join && !leftNow {
			continue
		}
		r, err := sy.hub.Room(ctx, m.RoomID)
		if err != nil {
			return nil, nil, mxerr.Internal(err)
		}
		if m.Membership == visibility.Join {
			rooms = append(rooms, r)
		}
		all = append(all, roomMembership{r, m})
	}
	shares := func(u string) bool {
		if u == userID {
			return true
		}
		for _, r := range rooms {
			if r.Membership(u) == visibility.Join {
				return true
			}
		}
		return false
	}
	changedSet, leftSet := map[string]bool{}, map[string]bool{}

	changes, ok := sy.hub.DeviceListChanges(since, to)
	if !ok {
		if changes, err = sy.store.DeviceListChanges(ctx, since, to); err != nil {
			return nil, nil, mxerr.Internal(err)
		}
	}
	for _, c := range changes {
		if c.OnlyFor == userID || c.OnlyFor == "" && shares(c.UserID) {
			changedSet[c.UserID] = true
		}
	}

	for _, rm := range all {
		r, m := rm.room, rm.m
		if m.Membership != visibility.Join {
			// Left in the window: its members may no longer share a room with the user.
			for _, u := range r.Joined() {
				leftSet[u] = true
			}
			continue
		}
		hist, err := sy.hub.History(ctx, r, userID)
		if err != nil {
			return nil, nil, mxerr.Internal(err)
		}
		if live.MembershipAt(hist, since) != visibility.Join {
			for _, u := range r.Joined() {
				changedSet[u] = true
			}
			continue
		}
		for _, c := range r.MemberChanges(since, to) {
			switch c.After {
			case visibility.Join, visibility.Invite, "knock":
				changedSet[c.UserID] = true
			default:
				if c.Before == visibility.Join {
					leftSet[c.UserID] = true
				}
			}
		}
	}
	for u := range leftSet {
		if !changedSet[u] && !shares(u) {
			left = append(left, u)
		}
	}
	for u := range changedSet {
		changed = append(changed, u)
	}
	slices.Sort(changed)
	slices.Sort(left)
	return changed, left, nil
}

// toDevicePending reports from memory whether the device has to-device messages after ack
// that are visible at cur.
func (sy *Syncer) toDevicePending(ctx context.Context, sess *auth.Session, ack, cur stream.Pos) (bool, error) {
	if sess.DeviceID == "" {
		return false, nil
	}
	head, _, err := sy.hub.ToDeviceState(ctx, sess.UserID, sess.DeviceID)
	if err != nil {
		return false, mxerr.Internal(err)
	}
	return min(head, cur) > ack, nil
}

// finishE2EE adds to a /sync response that is about to be sent the to-device messages
// (after deleting those acknowledged by ack) and the device's key counts. It runs once per
// response, not on every wake-up, and reads storage only when messages wait (the counts
// are cached in the hub).
func (sy *Syncer) finishE2EE(ctx context.Context, sess *auth.Session, resp *syncResponse, ack stream.Pos) error {
	resp.UnusedFallbackKeyTypes = []string{}
	if sess.DeviceID == "" {
		resp.OneTimeKeysCount = e2ee.KeyCounts(nil)
		return nil
	}
	user, device := sess.UserID, sess.DeviceID
	head, acked, err := sy.hub.ToDeviceState(ctx, user, device)
	if err != nil {
		return mxerr.Internal(err)
	}
	// The client has what was sent up to ack: those messages go (once per position).
	if ack > acked && head > acked {
		if err := sy.store.Write(ctx, func(tx storage.Tx) error { return tx.DeleteToDevice(ctx, user, device, ack) }); err != nil {
			return mxerr.Internal(err)
		}
		sy.hub.ToDeviceDeleted(user, device, ack)
	}
	if min(head, resp.at) > ack {
		msgs, err := sy.store.ToDeviceMessages(ctx, user, device, ack, resp.at, toDeviceBatch)
		if err != nil {
			return mxerr.Internal(err)
		}
		for _, m := range msgs {
			resp.ToDevice.Events = append(resp.ToDevice.Events, appendToDevice(nil, m))
		}
		if len(msgs) == toDeviceBatch {
			resp.NextBatch = stream.SyncToken(resp.at, msgs[len(msgs)-1].Pos)
		}
	}
	counts, err := sy.hub.KeyCounts(ctx, user, device)
	if err != nil {
		return mxerr.Internal(err)
	}
	resp.OneTimeKeysCount = e2ee.KeyCounts(maps.Clone(counts.OneTime))
	resp.UnusedFallbackKeyTypes = counts.UnusedFallback
	return nil
}

// appendToDevice encodes a to-device message as /sync serves it.
func appendToDevice(b []byte, m storage.ToDeviceMessage) jsontext.Value {
	b = append(b, `{"content":`...)
	b = append(b, m.Content...)
	b = append(b, `,"sender":`...)
	b, _ = jsontext.AppendQuote(b, m.Sender)
	b = append(b, `,"type":`...)
	b, _ = jsontext.AppendQuote(b, m.Type)
	return append(b, '}')
}

// KeyChanges serves GET /keys/changes: the users whose devices changed since from, and
// those who stopped sharing a room, as /sync would have reported them. Like Synapse, it
// answers up to now whatever to says.
func (sy *Syncer) KeyChanges(ctx context.Context, sess *auth.Session, from stream.Pos) (changed, left []string, err error) {
	since, err := sy.resolveFrom(ctx, &from)
	if err != nil {
		return nil, nil, err
	}
	ms, err := sy.hub.Memberships(ctx, sess.UserID)
	if err != nil {
		return nil, nil, mxerr.Internal(err)
	}
	changed, left, err = sy.deviceListUpdates(ctx, sess.UserID, ms, since, sy.notifier.Current())
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	return changed, left, err
}
