/*
 * AlertFlow in-app bell: a dependency-free widget a tenant drops into any page.
 *
 *   <div id="bell"></div>
 *   <script src="https://alertflow.example/static/alertflow/inbox.js"></script>
 *   <script>
 *     AlertFlowInbox.mount(document.getElementById("bell"), {
 *       apiUrl: "https://alertflow.example",      // where /api/v1/inbox is
 *       wsUrl: "wss://ws.alertflow.example",      // `ws_url` from the token endpoint
 *       token: "rt_…",                            // a recipient token, or instead:
 *       // tenant: "<client id>", recipient: "<external id>", hmac: "<hex HMAC-SHA256>",
 *       getToken: async () => "rt_…",             // optional: a fresh token when one expires
 *     });
 *   </script>
 *
 * It shows a bell with the unread count, a dropdown list (mark read, archive, mark all read),
 * updates live over the websocket, and reconnects with exponential backoff, asking the server
 * for what it missed since the last message it saw. The inbox in AlertFlow is the truth; the
 * socket only tells the widget that something changed.
 *
 * A refused credential (the socket closed with 4401, reason `token_expired`, `credentials_revoked`
 * or `invalid_credentials`; an HTTP 401) is never tried again: the widget asks `getToken` once
 * for a new one and, when there is none or the new one is refused too before the server accepted
 * it, stops and calls `onAuthError` (no reconnect loop with a dead credential).
 */
(function (global) {
  "use strict";

  var CLOSE_UNAUTHORIZED = 4401;
  var MAX_BACKOFF_MS = 30000;
  var PAGE_SIZE = 20;

  var STYLE = [
    ":host{all:initial;font:14px/1.4 system-ui,sans-serif;color:#1f2933;position:relative;display:inline-block}",
    ".af-bell{position:relative;background:none;border:0;cursor:pointer;padding:6px;border-radius:6px}",
    ".af-bell:hover{background:#eef2f7}",
    ".af-bell svg{width:24px;height:24px;display:block}",
    ".af-badge{position:absolute;top:0;right:0;min-width:18px;height:18px;padding:0 5px;box-sizing:border-box;",
    "border-radius:9px;background:#d64545;color:#fff;font-size:11px;line-height:18px;text-align:center}",
    ".af-badge[hidden]{display:none}",
    ".af-panel{position:absolute;right:0;top:40px;width:340px;max-height:420px;overflow:auto;background:#fff;",
    "border:1px solid #d9e2ec;border-radius:8px;box-shadow:0 8px 24px rgba(0,0,0,.12);z-index:2147483000}",
    ".af-panel[hidden]{display:none}",
    ".af-head{display:flex;justify-content:space-between;align-items:center;padding:8px 12px;border-bottom:1px solid #eef2f7}",
    ".af-head button,.af-actions button{background:none;border:0;color:#2563eb;cursor:pointer;font:inherit;padding:2px 4px}",
    ".af-list{list-style:none;margin:0;padding:0}",
    ".af-item{padding:10px 12px;border-bottom:1px solid #f0f4f8;cursor:pointer}",
    ".af-item.af-unread{background:#f5f9ff}",
    ".af-item.af-unread .af-title::before{content:'';display:inline-block;width:8px;height:8px;border-radius:4px;",
    "background:#2563eb;margin-right:6px}",
    ".af-title{font-weight:600}",
    ".af-body{color:#52606d;margin-top:2px}",
    ".af-actions{margin-top:4px;text-align:right}",
    ".af-empty{padding:16px;color:#7b8794;text-align:center}",
    ".af-status{padding:4px 12px;color:#7b8794;font-size:12px}",
  ].join("");

  var BELL_SVG =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" aria-hidden="true">' +
    '<path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/><path d="M13.7 21a2 2 0 0 1-3.4 0"/></svg>';

  function Inbox(host, options) {
    this.options = options || {};
    this.apiUrl = (this.options.apiUrl || "").replace(/\/$/, "");
    this.wsUrl = (this.options.wsUrl || "").replace(/\/$/, "");
    this.token = this.options.token || "";
    this.items = []; // newest first
    this.byId = {};
    this.lastId = null; // the newest message this widget has seen, for `sync` after a reconnect
    // What the socket said while a `refresh` was in flight: its page was read before, so it must
    // not wipe them (a message pushed then, or a newer unread count).
    this.pushedDuringRefresh = null;
    this.attempt = 0;
    this.socket = null;
    this.stopped = false;
    this.render(host);
    this.refresh();
    this.connect();
  }

  Inbox.prototype.render = function (host) {
    this.host = host;
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    root.innerHTML =
      "<style>" + STYLE + "</style>" +
      '<button class="af-bell" type="button" aria-label="Notifications" aria-expanded="false">' + BELL_SVG +
      '<span class="af-badge" hidden>0</span></button>' +
      '<div class="af-panel" role="dialog" aria-label="Notifications" hidden>' +
      '<div class="af-head"><strong>Notifications</strong><button type="button" class="af-read-all">Mark all read</button></div>' +
      '<div class="af-status" hidden></div><ul class="af-list"></ul></div>';
    this.root = root;
    this.bell = root.querySelector(".af-bell");
    this.badge = root.querySelector(".af-badge");
    this.panel = root.querySelector(".af-panel");
    this.list = root.querySelector(".af-list");
    this.status = root.querySelector(".af-status");
    var self = this;
    this.bell.addEventListener("click", function () { self.toggle(); });
    root.querySelector(".af-read-all").addEventListener("click", function () { self.readAll(); });
  };

  // --- REST ------------------------------------------------------------------------------------

  Inbox.prototype.headers = function () {
    var headers = { "Content-Type": "application/json" };
    if (this.token) {
      headers.Authorization = "Bearer " + this.token;
    } else {
      headers["X-Inbox-Tenant"] = this.options.tenant || "";
      headers["X-Inbox-Recipient"] = this.options.recipient || "";
      headers["X-Inbox-HMAC"] = this.options.hmac || "";
    }
    return headers;
  };

  Inbox.prototype.request = function (method, path, body, renewed) {
    var self = this;
    return fetch(this.apiUrl + path, {
      method: method,
      headers: this.headers(),
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (response) {
      if (response.status === 401) {
        // Once: a token `getToken` has just given that is refused as well is not retried.
        if (renewed) return self.signOut().then(function () { throw new Error("unauthorized"); });
        return self.renewToken().then(function (ok) {
          if (!ok) throw new Error("unauthorized");
          return self.request(method, path, body, true);
        });
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  };

  Inbox.prototype.refresh = function () {
    var self = this;
    var pushed = { items: [], count: null };
    this.pushedDuringRefresh = pushed;
    return this.request("GET", "/api/v1/inbox?page_size=" + PAGE_SIZE).then(function (page) {
      self.items = [];
      self.byId = {};
      page.results.forEach(function (item) { self.add(item, false); });
      pushed.items.forEach(function (item) { self.add(item, true); });
      if (self.items.length && !self.lastId) self.lastId = self.items[0].id;
      self.setCount(pushed.count !== null ? pushed.count : page.unread_count);
      self.draw();
    }).catch(function (error) {
      self.showStatus("Could not load notifications (" + error.message + ")");
    }).then(function () {
      if (self.pushedDuringRefresh === pushed) self.pushedDuringRefresh = null;
    });
  };

  Inbox.prototype.act = function (id, action) {
    var self = this;
    // Through the socket when it is open (the server then updates every tab's count), else REST.
    if (action !== "unread" && this.socket && this.socket.readyState === 1) {
      this.socket.send(JSON.stringify({ action: action, id: id }));
      return Promise.resolve();
    }
    return this.request("POST", "/api/v1/inbox/" + encodeURIComponent(id) + "/" + action).then(function (result) {
      self.setCount(result.unread_count);
    });
  };

  Inbox.prototype.readAll = function () {
    var self = this;
    var now = new Date().toISOString();
    return this.request("POST", "/api/v1/inbox/read-all", {}).then(function (result) {
      self.items.forEach(function (item) { item.read_at = item.read_at || now; });
      self.setCount(result.unread_count);
      self.draw();
    });
  };

  // --- Socket ----------------------------------------------------------------------------------

  Inbox.prototype.socketUrl = function () {
    var query = this.token
      ? "token=" + encodeURIComponent(this.token)
      : "tenant=" + encodeURIComponent(this.options.tenant || "") +
        "&recipient=" + encodeURIComponent(this.options.recipient || "") +
        "&hmac=" + encodeURIComponent(this.options.hmac || "");
    return this.wsUrl + "/ws/inbox?" + query;
  };

  Inbox.prototype.connect = function () {
    if (this.stopped || !this.wsUrl) return;
    var self = this;
    var socket = new WebSocket(this.socketUrl());
    this.socket = socket;
    socket.onopen = function () {
      self.setState("live");
      var reconnected = self.attempt > 0;
      self.attempt = 0;
      self.showStatus("");
      if (reconnected) socket.send(JSON.stringify({ action: "sync", after: self.lastId }));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      // The server sends the counts first once it accepted the credential.
      self.untried = false;
      self.receive(frame);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return;
      self.socket = null;
      self.setState("offline");
      if (event.code === CLOSE_UNAUTHORIZED) {
        // A credential refused before the server ever accepted it, just after `getToken` gave it:
        // asking again would loop on a dead recipient, tenant or backend.
        if (self.untried) {
          self.signOut();
          return;
        }
        self.renewToken().then(function (renewed) {
          if (!renewed) {
            self.showStatus("Signed out of notifications.");
            return;
          }
          self.untried = true;
          self.connect();
        });
        return;
      }
      self.scheduleReconnect();
    };
  };

  Inbox.prototype.scheduleReconnect = function () {
    if (this.stopped) return;
    var self = this;
    this.attempt += 1;
    // Exponential backoff with full jitter, so a restarted ws node is not hit by every tab at once.
    var ceiling = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, this.attempt - 1));
    var delay = Math.round(Math.random() * ceiling) + 250;
    this.showStatus("Reconnecting…");
    setTimeout(function () { self.connect(); }, delay);
  };

  Inbox.prototype.signOut = function () {
    this.stopped = true;
    this.showStatus("Signed out of notifications.");
    if (typeof this.options.onAuthError === "function") this.options.onAuthError();
    return Promise.resolve();
  };

  Inbox.prototype.renewToken = function () {
    var self = this;
    if (typeof this.options.getToken !== "function") {
      if (typeof this.options.onAuthError === "function") this.options.onAuthError();
      return Promise.resolve(false);
    }
    return Promise.resolve(this.options.getToken()).then(function (token) {
      if (!token || token === self.token) return false;
      self.token = token;
      return true;
    }, function () { return false; });
  };

  Inbox.prototype.receive = function (frame) {
    var pushed = this.pushedDuringRefresh;
    if (frame.type === "unread_count") {
      if (pushed) pushed.count = frame.count;
      this.setCount(frame.count);
    } else if (frame.type === "message") {
      var item = {
        id: frame.id, title: frame.title, body: frame.body, action_url: frame.action_url,
        category: frame.category, data: frame.data, created_at: frame.created_at, read_at: null,
      };
      if (pushed) pushed.items.push(item);
      this.add(item, true);
      this.lastId = frame.id;
      this.draw();
      if (typeof this.options.onMessage === "function") this.options.onMessage(frame);
    }
  };

  // --- State and drawing -----------------------------------------------------------------------

  Inbox.prototype.add = function (item, newest) {
    if (this.byId[item.id]) return; // a resync repeats what the widget already holds
    this.byId[item.id] = item;
    if (newest) this.items.unshift(item);
    else this.items.push(item);
    this.items.sort(function (a, b) { return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0; });
  };

  Inbox.prototype.remove = function (id) {
    delete this.byId[id];
    this.items = this.items.filter(function (item) { return item.id !== id; });
  };

  Inbox.prototype.setCount = function (count) {
    this.count = count;
    this.badge.textContent = count > 99 ? "99+" : String(count);
    this.badge.hidden = !count;
    this.bell.setAttribute("aria-label", "Notifications, " + count + " unread");
  };

  // `data-af-state` on the host element ("live" while the socket is open, else "offline") lets a
  // page style or observe the connection.
  Inbox.prototype.setState = function (state) {
    this.host.setAttribute("data-af-state", state);
  };

  Inbox.prototype.showStatus = function (text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  };

  Inbox.prototype.toggle = function () {
    var open = this.panel.hidden;
    this.panel.hidden = !open;
    this.bell.setAttribute("aria-expanded", String(open));
    if (open) {
      var self = this;
      this.items.forEach(function (item) {
        if (!item.seen_at) {
          item.seen_at = new Date().toISOString();
          self.act(item.id, "seen");
        }
      });
    }
  };

  Inbox.prototype.draw = function () {
    var self = this;
    this.list.textContent = "";
    if (!this.items.length) {
      var empty = document.createElement("li");
      empty.className = "af-empty";
      empty.textContent = "You are all caught up.";
      this.list.appendChild(empty);
      return;
    }
    this.items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "af-item" + (item.read_at ? "" : " af-unread");
      li.setAttribute("data-id", item.id);
      var title = document.createElement("div");
      title.className = "af-title";
      title.textContent = item.title || "";
      var body = document.createElement("div");
      body.className = "af-body";
      body.textContent = item.body || "";
      var actions = document.createElement("div");
      actions.className = "af-actions";
      var archive = document.createElement("button");
      archive.type = "button";
      archive.className = "af-archive";
      archive.textContent = "Archive";
      archive.addEventListener("click", function (event) {
        event.stopPropagation();
        self.remove(item.id);
        self.draw();
        self.act(item.id, "archive");
      });
      actions.appendChild(archive);
      li.appendChild(title);
      li.appendChild(body);
      li.appendChild(actions);
      li.addEventListener("click", function () {
        if (!item.read_at) {
          item.read_at = new Date().toISOString();
          self.draw();
          self.act(item.id, "read");
        }
        // Only http(s) links: an action_url is tenant content, never a javascript: URL.
        if (item.action_url && /^https?:\/\//i.test(item.action_url)) {
          global.open(item.action_url, "_blank", "noopener");
        }
      });
      self.list.appendChild(li);
    });
  };

  Inbox.prototype.destroy = function () {
    this.stopped = true;
    if (this.socket) this.socket.close();
  };

  global.AlertFlowInbox = {
    mount: function (element, options) { return new Inbox(element, options); },
  };
})(window);
