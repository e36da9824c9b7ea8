// Porthole's web pages in a real browser: Debian's chromium, driven by playwright-core.
// The room page shows history and follows the room live; the embed posts as a guest and a
// real user's /sync receives the post; no console errors; axe-core finds no serious or
// critical accessibility violations; screenshots at phone and desktop widths are written to
// $PORTHOLE_SCREENSHOTS (default e2e/browser/screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = require("node:fs").readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const baseUrl = process.env.PORTHOLE_URL ?? "http://127.0.0.1:8008";
const host = new URL(baseUrl).hostname;
if (!host.startsWith("127.") && host !== "localhost" && host !== "[::1]") {
  throw new Error(`PORTHOLE_URL must be a loopback address, not ${baseUrl}`);
}
const shots = process.env.PORTHOLE_SCREENSHOTS ?? new URL("./screenshots/", import.meta.url).pathname;
mkdirSync(shots, { recursive: true });
const api = `${baseUrl}/_matrix/client/v3`;

async function call(method, path, token, body) {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function registerUser(name) {
  const username = `${name}${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  return call("POST", "/register", null, { username, password: `pw-${username}`, auth: { type: "m.login.dummy" } });
}

let browser, alice, roomId, txn = 0;
const send = (body) => call("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${Date.now()}${txn++}`, alice.access_token, { msgtype: "m.text", body });

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  alice = await registerUser("alice");
  await call("PUT", `/profile/${encodeURIComponent(alice.user_id)}/displayname`, alice.access_token, { displayname: "Alice" });
  const r = await call("POST", "/createRoom", alice.access_token, {
    preset: "public_chat", visibility: "public", name: "Browser test room", topic: "A room for the browser tests",
    initial_state: [
      { type: "m.room.history_visibility", content: { history_visibility: "world_readable" } },
      { type: "m.room.guest_access", content: { guest_access: "can_join" } },
    ],
  });
  roomId = r.room_id;
  for (let i = 0; i < 5; i++) await send(`history message ${i}`);
});

after(async () => { await browser?.close(); });

// open returns a page whose console errors and failed requests are collected.
async function open(path, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(baseUrl + path);
  return { page, problems, context };
}

async function axe(page) {
  // The page's CSP forbids inline scripts (rightly): evaluate axe through the devtools protocol.
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.help} (${v.nodes.length})`);
}

const desktop = { width: 1280, height: 900 }, phone = { width: 390, height: 844 };

test("the room page shows history and follows the room live", async () => {
  const { page, problems, context } = await open(`/room/${encodeURIComponent(roomId)}`, desktop);
  const bodies = await page.locator("#timeline li.ev .body").allTextContents();
  assert.ok(bodies.includes("history message 4"), `history shown: ${bodies}`);
  // Wait until the page's long-poll is parked, then send: the message must appear without reload.
  await page.waitForFunction(() => document.querySelector("#timeline")?.dataset.from);
  await waitParked(1);
  await send("live message");
  await page.locator("#timeline li.ev .body", { hasText: "live message" }).waitFor({ timeout: 15000 });
  assert.deepEqual(await axe(page), []);
  await page.screenshot({ path: `${shots}/room-desktop.png`, fullPage: true });
  await context.close();
  const p2 = await open(`/room/${encodeURIComponent(roomId)}`, phone);
  await p2.page.screenshot({ path: `${shots}/room-phone.png`, fullPage: true });
  await p2.context.close();
  assert.deepEqual(problems.concat(p2.problems), []);
});

test("the directory lists the room and is accessible", async () => {
  for (const [name, viewport] of [["desktop", desktop], ["phone", phone]]) {
    const { page, problems, context } = await open("/", viewport);
    const names = await page.locator("ul.rooms .name").allTextContents();
    assert.ok(names.includes("Browser test room"), `directory: ${names}`);
    assert.deepEqual(await axe(page), []);
    await page.screenshot({ path: `${shots}/directory-${name}.png`, fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  }
});

test("the embed posts as a guest and a real user's /sync receives it", async () => {
  const { page, problems, context } = await open(`/embed/${encodeURIComponent(roomId)}`, { width: 480, height: 640 });
  await page.locator("#compose").waitFor({ state: "visible" });
  assert.deepEqual(await axe(page), []);
  await page.screenshot({ path: `${shots}/embed-phone.png`, fullPage: true });
  const since = (await call("GET", "/sync?timeout=0", alice.access_token)).next_batch;
  await page.fill("#compose-name", "Visiting Vera");
  await page.fill("#compose-body", "hello from the embed");
  await page.click("#compose button");
  await page.waitForFunction(() => document.querySelector("#status")?.textContent, null, { timeout: 15000 });
  assert.equal(await page.locator("#status").textContent(), "Posted.");
  // Alice's /sync gets the guest's message (and the guest's join) from the embed.
  let found = false, next = since;
  for (let i = 0; i < 10 && !found; i++) {
    const s = await call("GET", `/sync?timeout=5000&since=${encodeURIComponent(next)}`, alice.access_token);
    next = s.next_batch;
    const events = s.rooms?.join?.[roomId]?.timeline?.events ?? [];
    found = events.some((e) => e.type === "m.room.message" && e.content.body === "hello from the embed" && e.sender.startsWith("@"));
  }
  assert.ok(found, "alice's /sync never saw the embed's post");
  // The embed's own live view shows it too.
  await page.locator("#timeline li.ev .body", { hasText: "hello from the embed" }).waitFor({ timeout: 15000 });
  await page.setViewportSize({ width: 1024, height: 700 });
  await page.screenshot({ path: `${shots}/embed-desktop.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await context.close();
});

async function waitParked(min) {
  const end = Date.now() + 15000;
  while (Date.now() < end) {
    const m = (await (await fetch(`${baseUrl}/metrics`)).text()).match(/^porthole_longpoll_waiting (\d+)/m);
    if (m && Number(m[1]) >= min) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the page's long-poll never parked");
}
