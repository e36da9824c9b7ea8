// Shared by the end-to-end tests: the server's address (loopback only), a fetch the tests
// can cut off at the end, and small helpers that call the API directly.
import { after } from "node:test";
import assert from "node:assert/strict";
import { logger } from "matrix-js-sdk/lib/logger.js";

export const baseUrl = process.env.PORTHOLE_URL ?? "http://127.0.0.1:8008";
const host = new URL(baseUrl).hostname;
if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host) && !host.startsWith("127.")) {
  throw new Error(`PORTHOLE_URL must be a loopback address, not ${baseUrl}`);
}
logger.setLevel?.("warn");

// Every request the SDK makes goes through this fetch, so the test can cut them all off
// at the end (a pending long-poll would otherwise keep Node alive).
export const controllers = new Set();
export const fetchFn = (input, init = {}) => {
  const c = new AbortController();
  controllers.add(c);
  if (init.signal) init.signal.addEventListener("abort", () => c.abort(init.signal.reason));
  return fetch(input, { ...init, signal: c.signal }).finally(() => controllers.delete(c));
};
after(() => {
  for (const c of controllers) c.abort();
});

const api = `${baseUrl}/_matrix/client/v3`;
export async function call(method, path, token, body) {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  return { status: res.status, json };
}

export async function registerUser() {
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
export async function waitForParkedPoll(min, deadlineMs = 15000) {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const m = text.match(/^porthole_longpoll_waiting (\d+)/m);
    if (m && Number(m[1]) >= min) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the peek poll never parked");
}
