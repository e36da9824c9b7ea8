// End-to-end encryption with matrix-js-sdk's Rust crypto (matrix-sdk-crypto-wasm): two users
// in an encrypted room exchange messages that decrypt on the other side, and a second device
// of one of them, logged in later, decrypts the messages sent after it appeared. Everything
// the crypto needs goes through Porthole: /keys/upload, /keys/query, /keys/claim,
// /sendToDevice, and the E2EE parts of /sync.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { baseUrl, call, fetchFn, registerUser } from "./helpers.mjs";

// The Rust crypto traces at debug level to the console; keep warnings and errors only.
console.debug = () => {};
console.info = () => {};

function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

const clients = [];

// start logs a client in with Rust crypto (in memory: Node has no IndexedDB) and waits
// for its first sync.
async function start(login) {
  const client = sdk.createClient({ baseUrl, fetchFn, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
  clients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
    });
  });
  await client.startClient({ initialSyncLimit: 10 });
  await within(30000, prepared, `${login.user_id}'s first sync`);
  return client;
}

// decrypted resolves with the clear content of the first message in roomId with the body.
function decrypted(client, roomId, body) {
  return new Promise((resolve, reject) => {
    const check = async (ev) => {
      if (ev.getRoomId() !== roomId || ev.getWireType() !== "m.room.encrypted") return;
      await client.decryptEventIfNeeded(ev);
      if (ev.isDecryptionFailure()) {
        // A key that is still on its way arrives as a to-device message; decryption is
        // retried then, and MatrixEventEvent.Decrypted fires again.
        return;
      }
      if (ev.getClearContent()?.body === body) resolve(ev);
    };
    client.on(sdk.RoomEvent.Timeline, (ev) => check(ev).catch(reject));
    client.on(sdk.MatrixEventEvent.Decrypted, (ev) => check(ev).catch(reject));
  });
}

// knowsDevice waits until client's crypto has device deviceId of userId (learnt from
// device_lists.changed in /sync and /keys/query).
async function knowsDevice(client, userId, deviceId, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const devices = await client.getCrypto().getUserDeviceInfo([userId], true);
    if (devices.get(userId)?.has(deviceId)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${client.getUserId()} never learnt of ${userId}'s device ${deviceId}`);
}

test("encrypted messages decrypt for the other user and for a new device", async () => {
  const aliceLogin = await registerUser();
  const bobLogin = await registerUser();
  try {
    const alice = await start(aliceLogin);
    const bob = await start(bobLogin);

    const created = await call("POST", "/createRoom", aliceLogin.access_token, {
      preset: "private_chat",
      invite: [bobLogin.user_id],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    assert.equal(created.status, 200, JSON.stringify(created.json));
    const roomId = created.json.room_id;
    await within(20000, new Promise((resolve) => {
      const check = () => bob.getRoom(roomId) && resolve();
      bob.on(sdk.ClientEvent.Room, check);
      check();
    }), "bob's invite");
    await bob.joinRoom(roomId);
    await knowsDevice(alice, bobLogin.user_id, bobLogin.device_id);

    // Alice to Bob.
    const bobGot = decrypted(bob, roomId, "hello bob");
    const sent = await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello bob" });
    const ev = await within(30000, bobGot, "bob decrypting alice's message");
    assert.equal(ev.getId(), sent.event_id);
    assert.equal(ev.getSender(), aliceLogin.user_id);
    assert.equal(ev.getWireType(), "m.room.encrypted", "the message travelled encrypted");

    // Bob to Alice.
    await knowsDevice(bob, aliceLogin.user_id, aliceLogin.device_id);
    const aliceGot = decrypted(alice, roomId, "hello alice");
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "hello alice" });
    await within(30000, aliceGot, "alice decrypting bob's message");

    // Bob logs in on a second device; Alice learns of it and shares her next key with it.
    const login = await call("POST", "/login", null, {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: bobLogin.user_id },
      password: `pw-${bobLogin.user_id.slice(1).split(":")[0]}`,
    });
    assert.equal(login.status, 200, JSON.stringify(login.json));
    const bob2 = await start(login.json);
    await knowsDevice(alice, bobLogin.user_id, login.json.device_id);
    const bob2Got = decrypted(bob2, roomId, "hello both of you");
    const bob1Got = decrypted(bob, roomId, "hello both of you");
    await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello both of you" });
    await within(30000, bob2Got, "bob's second device decrypting");
    await within(30000, bob1Got, "bob's first device decrypting");

    // Cross-signing: the first upload of Alice's keys needs no password; her device is then
    // signed by her self-signing key, and Bob sees both.
    const password = `pw-${aliceLogin.user_id.slice(1).split(":")[0]}`;
    await alice.getCrypto().bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: aliceLogin.user_id }, password });
      },
    });
    const status = await alice.getCrypto().getCrossSigningStatus();
    assert.ok(status.publicKeysOnDevice && status.privateKeysCachedLocally.masterKey, JSON.stringify(status));
    const q = await call("POST", "/keys/query", bobLogin.access_token, { device_keys: { [aliceLogin.user_id]: [] } });
    const master = q.json.master_keys[aliceLogin.user_id];
    const ssk = Object.keys(q.json.self_signing_keys[aliceLogin.user_id]?.keys ?? {})[0];
    assert.ok(master && ssk, JSON.stringify(q.json));
    assert.ok(q.json.device_keys[aliceLogin.user_id][aliceLogin.device_id].signatures[aliceLogin.user_id][ssk], "alice's device is cross-signed");
    assert.equal(q.json.user_signing_keys[aliceLogin.user_id], undefined, "bob does not see alice's user-signing key");
    // Bob's crypto learns of it through device_lists.changed and /keys/query, and checks
    // the chain itself: alice's device is signed by its owner.
    await within(20000, (async () => {
      for (;;) {
        const v = await bob.getCrypto().getDeviceVerificationStatus(aliceLogin.user_id, aliceLogin.device_id);
        if (v?.signedByOwner) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    })(), "bob seeing alice's device signed by her cross-signing key");

    // Key backup: a new backup version, to which Alice's room keys go.
    await alice.getCrypto().resetKeyBackup();
    const backup = await within(30000, (async () => {
      for (;;) {
        const v = await call("GET", "/room_keys/version", aliceLogin.access_token);
        if (v.status === 200 && v.json.count > 0) return v.json;
        await new Promise((r) => setTimeout(r, 200));
      }
    })(), "alice's keys in the backup");
    assert.equal(backup.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2");

    // What the server holds is ciphertext only.
    const raw = await call("GET", `/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, aliceLogin.access_token);
    assert.equal(raw.status, 200);
    const messages = raw.json.chunk.filter((e) => e.type === "m.room.encrypted");
    assert.ok(messages.length >= 3, "the messages are stored as m.room.encrypted");
    assert.ok(!JSON.stringify(raw.json).includes("hello bob"), "no clear text on the server");
  } finally {
    for (const c of clients) c.stopClient();
  }
});
