// End-to-end: matrix-js-sdk with thread support starts against Porthole, lists the room's
// threads as Element's thread panel does (GET /v1/rooms/{id}/threads), reads a thread's
// replies (GET /v1/.../relations), and shows a reply that arrives live in its thread.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { baseUrl, call, fetchFn, registerUser } from "./helpers.mjs";

async function until(ms, what, check) {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a client with thread support sees threads and a live thread reply", async () => {
  const owner = await registerUser();
  const me = await registerUser();
  const room = await call("POST", "/createRoom", owner.access_token, { preset: "public_chat", name: "e2e threads" });
  assert.equal(room.status, 200, JSON.stringify(room.json));
  const roomId = room.json.room_id;
  const path = `/rooms/${encodeURIComponent(roomId)}`;
  assert.equal((await call("POST", `/join/${encodeURIComponent(roomId)}`, me.access_token, {})).status, 200);
  let n = 0;
  const send = async (content) => {
    const r = await call("PUT", `${path}/send/m.room.message/t${n++}`, owner.access_token, content);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json.event_id;
  };
  const reply = (root, body) => ({ msgtype: "m.text", body, "m.relates_to": { rel_type: "m.thread", event_id: root } });
  const root = await send({ msgtype: "m.text", body: "root" });
  await send(reply(root, "first"));
  await send(reply(root, "second"));
  for (let i = 0; i < 8; i++) await send({ msgtype: "m.text", body: `filler ${i}` }); // the root is outside the first sync

  const asked = [];
  const recording = (input, init) => {
    asked.push(new URL(input instanceof URL || typeof input === "string" ? input : input.url).pathname);
    return fetchFn(input, init);
  };
  const client = sdk.createClient({ baseUrl, fetchFn: recording, accessToken: me.access_token, userId: me.user_id, deviceId: me.device_id });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
    });
  });
  await client.startClient({ initialSyncLimit: 5, threadSupport: true });
  await prepared;
  assert.ok(client.supportsThreads(), "thread support is on");
  const r = client.getRoom(roomId);
  assert.ok(r, "the room is known");
  // What Element's thread panel does.
  await r.createThreadsTimelineSets();
  await r.fetchRoomThreads();
  const thread = await until(20000, `the thread (asked ${asked.join(" ")}; threads ${r.getThreads().map((t) => t.id)})`, () => r.getThread(root));
  await until(20000, "the thread's replies", () => thread.length === 2);
  assert.ok(asked.some((p) => p.endsWith(`/rooms/${encodeURIComponent(roomId)}/threads`) || p.endsWith(`/rooms/${roomId}/threads`)),
    `the SDK listed the threads: ${asked.join(" ")}`);

  const latest = await send(reply(root, "live"));
  await until(20000, "the live reply in its thread", () => thread.length === 3 && thread.replyToEvent?.getId() === latest);
  assert.equal(thread.replyToEvent.getContent().body, "live");
  await thread.fetchRootEvent?.();
  const events = thread.timeline.map((e) => e.getContent().body);
  assert.ok(events.includes("first") && events.includes("live"), `thread timeline: ${events}`);
  assert.ok(asked.some((p) => p.includes("/relations/")), `the SDK read the thread's relations: ${asked.join(" ")}`);
  client.stopClient();
});
