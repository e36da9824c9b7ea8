// End-to-end: a matrix-js-sdk guest peeks a world-readable room on a running Porthole and
// receives every message sent afterwards, in order, exactly once; peeking a shared room
// fails. PORTHOLE_URL names the server (loopback only).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const baseUrl = process.env.PORTHOLE_URL ?? "http://127.0.0.1:8008";
const host = new URL(baseUrl).hostname;
if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host) && !host.startsWith("127.")) {
  throw new Error(`PORTHOLE_URL must be a loopback address, not ${baseUrl}`);
}
logger.setLevel?.("warn");

// Every request the SDK makes goes through this fetch, so the test can cut them all off
// at the end (a pending long-poll would otherwise keep Node alive).
const controllers = new Set();
const fetchFn = (input, init = {}) => {
  const c = new AbortController();
  controllers.add(c);
  if (init.signal) init.signal.addEventListener("abort", () => c.abort(init.signal.reason));
  return fetch(input, { ...init, signal: c.signal }).finally(() => controllers.delete(c));
};
after(() => {
  for (const c of controllers) c.abort();
});

const api = `${baseUrl}/_matrix/client/v3`;
async function call(method, path, token, body) {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  return { status: res.status, json };
}

async function registerUser() {
  const username = `e2e${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  const body = { username, password: `pw-${username}`, auth: { type: "m.login.dummy" } };
  let r = await call("POST", "/register", null, body);
  if (r.status === 401 && r.json.session) {
    body.auth.session = r.json.session;
    r = await call("POST", "/register", null, body);
  }
  assert.equal(r.status, 200, `register: ${JSON.stringify(r.json)}`);
  return r.json;
}

// waitForParkedPoll waits until the server reports a long-poll waiting (its /metrics
// gauge), so messages are sent only once the SDK's first /events is live.
async function waitForParkedPoll(min, deadlineMs = 15000) {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const m = text.match(/^porthole_longpoll_waiting (\d+)/m);
    if (m && Number(m[1]) >= min) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the peek poll never parked");
}

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
