// End-to-end: a registered user's matrix-js-sdk client starts against Porthole as it would
// against Synapse (push rules, filter, /sync), sees messages from another user live, and
// sees its own push-rule change come back through /sync.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { baseUrl, call, fetchFn, registerUser } from "./helpers.mjs";

function within(ms, promise, what) {
  return Promise.race([promise, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms))]);
}

test("a registered user's client starts, syncs and receives messages", async () => {
  const owner = await registerUser();
  const me = await registerUser();
  const room = await call("POST", "/createRoom", owner.access_token, { preset: "public_chat", name: "e2e client", invite: [me.user_id] });
  assert.equal(room.status, 200, JSON.stringify(room.json));
  const roomId = room.json.room_id;

  const client = sdk.createClient({ baseUrl, fetchFn, accessToken: me.access_token, userId: me.user_id, deviceId: me.device_id });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
    });
  });
  await client.startClient({ initialSyncLimit: 5 });
  await within(20000, prepared, "the first sync");
  assert.equal(client.pushRules?.global?.override?.[0]?.rule_id, ".m.rule.master", "push rules loaded at start");
  assert.ok(client.getRoom(roomId), "the invite arrived in the first sync");

  await client.joinRoom(roomId);
  const got = new Promise((resolve) => {
    client.on(sdk.RoomEvent.Timeline, (ev, r) => {
      if (r?.roomId === roomId && ev.getType() === "m.room.message" && ev.getContent().body === "hello") resolve(ev);
    });
  });
  const sent = await call("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/hello`, owner.access_token, { msgtype: "m.text", body: "hello" });
  assert.equal(sent.status, 200);
  const ev = await within(20000, got, "the message");
  assert.equal(ev.getId(), sent.json.event_id);
  assert.equal(ev.getSender(), owner.user_id);

  // Muting everything through the SDK comes back as m.push_rules account data.
  const muted = new Promise((resolve) => {
    client.on(sdk.ClientEvent.AccountData, (e) => {
      if (e.getType() === "m.push_rules" && e.getContent().global.override[0].enabled === true) resolve();
    });
  });
  await client.setPushRuleEnabled("global", "override", ".m.rule.master", true);
  await within(20000, muted, "the changed push rules");
  client.stopClient();
});
