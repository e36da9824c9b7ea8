// End-to-end: a matrix-js-sdk guest peeks a world-readable room on a running Porthole and
// receives every message sent afterwards, in order, exactly once; peeking a shared room
// fails. PORTHOLE_URL names the server (loopback only).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { baseUrl, call, controllers, fetchFn, registerUser, waitForParkedPoll } from "./helpers.mjs";

test("a guest peeks a world-readable room and receives every message once, in order", async () => {
  const owner = await registerUser();
  const room = await call("POST", "/createRoom", owner.access_token, {
    preset: "public_chat",
    name: "e2e peek",
    initial_state: [
      { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } },
      { type: "m.room.guest_access", state_key: "", content: { guest_access: "can_join" } },
    ],
  });
  assert.equal(room.status, 200, JSON.stringify(room.json));
  const roomId = room.json.room_id;
  await call("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/before`, owner.access_token, { msgtype: "m.text", body: "before" });

  const tmp = sdk.createClient({ baseUrl, fetchFn });
  const creds = await tmp.registerGuest({ body: {} });
  assert.ok(creds.access_token && creds.user_id, "guest registration");
  const guest = sdk.createClient({ baseUrl, fetchFn, accessToken: creds.access_token, userId: creds.user_id, deviceId: creds.device_id });
  guest.setGuest(true);

  const peeked = await guest.peekInRoom(roomId);
  assert.equal(peeked.roomId, roomId);
  const initial = peeked.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body);
  assert.deepEqual(initial, ["before"], "initialSync gave the history");

  const received = [];
  const allReceived = new Promise((resolve) => {
    peeked.on(sdk.RoomEvent.Timeline, (ev) => {
      if (ev.getType() !== "m.room.message") return;
      received.push(ev.getContent().body);
      if (received.length >= 20) resolve();
    });
  });
  await waitForParkedPoll(1);
  const sent = [];
  for (let i = 0; i < 20; i++) {
    const body = `msg ${i}`;
    const r = await call("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, owner.access_token, { msgtype: "m.text", body });
    assert.equal(r.status, 200);
    sent.push(body);
  }
  await Promise.race([allReceived, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out; got ${JSON.stringify(received)}`)), 30000))]);
  // Let any duplicate arrive before judging.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(received, sent, "every message exactly once, in order");
  // Stop peeking, then answer the outstanding poll with one more event so the SDK ends
  // cleanly (an aborted poll would schedule a 30 s retry and keep Node alive).
  guest.stopPeeking();
  await call("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/bye`, owner.access_token, { msgtype: "m.text", body: "bye" });
  for (let i = 0; i < 100 && controllers.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  guest.stopClient();
});

test("peeking a room that is not world-readable fails", async () => {
  const owner = await registerUser();
  const room = await call("POST", "/createRoom", owner.access_token, { preset: "private_chat" });
  assert.equal(room.status, 200);
  const tmp = sdk.createClient({ baseUrl, fetchFn });
  const creds = await tmp.registerGuest({ body: {} });
  const guest = sdk.createClient({ baseUrl, fetchFn, accessToken: creds.access_token, userId: creds.user_id, deviceId: creds.device_id });
  guest.setGuest(true);
  await assert.rejects(guest.peekInRoom(room.json.room_id), (err) => {
    assert.equal(err.httpStatus, 403);
    assert.equal(err.errcode, "M_FORBIDDEN");
    return true;
  });
  guest.stopPeeking();
  guest.stopClient();
});
