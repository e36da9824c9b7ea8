// Porthole's live room pages: follow the room through the peek stream (GET /events) as a
// guest, append new messages, and (in an embed that allows it) post as a guest. The page is
// complete without this script; it only adds what happens after the page was rendered.
(function () {
  "use strict";
  var api = "/_matrix/client/v3";
  var timeline = document.getElementById("timeline");
  var status = document.getElementById("status");
  if (!timeline) return;
  var roomId = timeline.dataset.room;
  var from = timeline.dataset.from;
  var link = timeline.dataset.link;
  var names = {};
  Array.prototype.forEach.call(timeline.querySelectorAll("li[data-sender]"), function (li) {
    names[li.dataset.sender] = li.dataset.name;
  });
  var storageKey = "porthole.guest." + location.host;

  function say(text) { if (status) status.textContent = text; }

  function loadGuest() {
    try { return JSON.parse(localStorage.getItem(storageKey)) || null; } catch (e) { return null; }
  }
  function saveGuest(g) {
    try { localStorage.setItem(storageKey, JSON.stringify(g)); } catch (e) { /* private mode: keep it in memory */ }
  }
  var guest = loadGuest();

  function call(method, path, body, token) {
    var opts = { method: method, headers: {} };
    if (token) opts.headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(api + path, opts).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (json) {
        if (!res.ok) {
          var err = new Error(json.error || ("HTTP " + res.status));
          err.status = res.status;
          err.errcode = json.errcode;
          err.retryAfter = json.retry_after_ms;
          throw err;
        }
        return json;
      });
    });
  }

  function ensureGuest() {
    if (guest && guest.token) return Promise.resolve(guest);
    return call("POST", "/register?kind=guest", {}).then(function (r) {
      guest = { token: r.access_token, user: r.user_id };
      saveGuest(guest);
      return guest;
    });
  }

  function localpart(id) { return String(id).replace(/^@/, "").split(":")[0]; }
  function nameOf(id) { return names[id] || localpart(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  // formatTime writes times as the server renders them ("2 Jan 2006 15:04 UTC").
  function formatTime(d) {
    return d.getUTCDate() + " " + months[d.getUTCMonth()] + " " + d.getUTCFullYear() + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function timeLink(ev) {
    var a = el("a", "time");
    a.href = link + "/event/" + encodeURIComponent(ev.event_id);
    var t = el("time");
    var d = new Date(ev.origin_server_ts || Date.now());
    t.dateTime = d.toISOString();
    t.textContent = formatTime(d);
    a.appendChild(t);
    return a;
  }

  // render builds a line for an event the way the server renders it, text only.
  function render(ev) {
    var c = ev.content || {};
    var rel = c["m.relates_to"] || {};
    if (ev.type === "m.room.member" && ev.state_key && c.displayname) names[ev.state_key] = String(c.displayname);
    if (ev.type === "m.room.message" && rel.rel_type === "m.replace") {
      var nc = c["m.new_content"];
      var old = document.getElementById("ev-" + rel.event_id);
      if (old && nc && typeof nc.body === "string") {
        var body = old.querySelector(".body");
        if (body) { body.textContent = nc.body; }
      }
      return null;
    }
    if (ev.type === "m.room.redaction") {
      var target = document.getElementById("ev-" + (ev.redacts || c.redacts));
      if (target) {
        var b = target.querySelector(".body");
        if (b) b.textContent = "Message deleted";
        target.className = "ev deleted";
      }
      return null;
    }
    var li = el("li", "ev");
    li.id = "ev-" + ev.event_id;
    li.dataset.sender = ev.sender;
    if (ev.type === "m.room.message") {
      var kind = { "m.emote": "emote", "m.notice": "notice", "m.image": "image", "m.video": "image", "m.file": "file", "m.audio": "file" }[c.msgtype] || "message";
      li.className = "ev " + kind;
      li.appendChild(el("span", "avatar", nameOf(ev.sender).charAt(0).toUpperCase())).setAttribute("aria-hidden", "true");
      var msg = el("div", "msg");
      var meta = el("p", "meta");
      var who = el("span", "sender", nameOf(ev.sender));
      who.title = ev.sender;
      meta.appendChild(who);
      meta.appendChild(document.createTextNode(" "));
      meta.appendChild(timeLink(ev));
      msg.appendChild(meta);
      var text = typeof c.body === "string" ? c.body : "";
      if (kind === "emote") text = "* " + nameOf(ev.sender) + " " + text;
      if (kind === "image") text = "Image: " + (c.filename || text);
      if (kind === "file") text = "File: " + (c.filename || text);
      msg.appendChild(el("p", "body", text));
      li.appendChild(msg);
      return li;
    }
    if (ev.type === "m.room.encrypted") {
      li.className = "ev encrypted";
      li.appendChild(el("p", "body", "Encrypted message"));
      return li;
    }
    if (ev.type === "m.room.member") {
      var m = c.membership, t = nameOf(ev.state_key);
      var line = m === "join" ? t + " joined" : m === "leave" ? t + " left" : m === "ban" ? nameOf(ev.sender) + " banned " + t : m === "invite" ? nameOf(ev.sender) + " invited " + t : "";
      if (!line) return null;
      li.className = "ev state";
      var p = el("p", "body", line + " ");
      p.appendChild(timeLink(ev));
      li.appendChild(p);
      return li;
    }
    return null;
  }

  function append(events) {
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    events.forEach(function (ev) {
      if (ev.event_id && document.getElementById("ev-" + ev.event_id)) return; // already shown
      var li = render(ev);
      if (li) timeline.appendChild(li);
    });
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  }

  var backoff = 1000;
  function poll() {
    ensureGuest().then(function (g) {
      var q = "?room_id=" + encodeURIComponent(roomId) + "&timeout=30000" + (from ? "&from=" + encodeURIComponent(from) : "");
      return call("GET", "/events" + q, undefined, g.token);
    }).then(function (r) {
      if (backoff > 1000) say(""); // back after "Reconnecting…"
      backoff = 1000;
      if (r.end) from = r.end;
      append(r.chunk || []);
      poll();
    }, function (err) {
      if (err.errcode === "M_UNKNOWN_TOKEN") { guest = null; saveGuest(null); }
      if (err.status === 403 || err.status === 404) { say("This room is no longer public."); return; }
      var wait = err.retryAfter || backoff;
      backoff = Math.min(backoff * 2, 30000) || 2000;
      say("Reconnecting…");
      setTimeout(poll, wait);
    });
  }
  if (from) poll();

  var form = document.getElementById("compose");
  if (form) {
    form.hidden = false;
    var joined = false;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var name = form.elements.name.value.trim();
      var body = form.elements.body.value.trim();
      if (!name || !body) return;
      var button = form.querySelector("button");
      button.disabled = true;
      var txn = "web" + Date.now() + Math.random().toString(36).slice(2);
      ensureGuest().then(function (g) {
        var steps = Promise.resolve();
        if (names[g.user] !== name) {
          steps = steps.then(function () {
            return call("PUT", "/profile/" + encodeURIComponent(g.user) + "/displayname", { displayname: name }, g.token);
          }).then(function () { names[g.user] = name; });
        }
        if (!joined) {
          steps = steps.then(function () {
            return call("POST", "/rooms/" + encodeURIComponent(roomId) + "/join", {}, g.token);
          }).then(function () { joined = true; });
        }
        return steps.then(function () {
          return call("PUT", "/rooms/" + encodeURIComponent(roomId) + "/send/m.room.message/" + txn, { msgtype: "m.text", body: body }, g.token);
        });
      }).then(function () {
        form.elements.body.value = "";
        say("Posted.");
      }, function (err) {
        say("Could not post: " + err.message);
      }).then(function () { button.disabled = false; });
    });
  }
})();
