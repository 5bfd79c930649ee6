/* AV Studio labelling client: plain JavaScript, no build step, nothing loaded from elsewhere.
 *
 * Views: sign in -> your tasks -> labelling (#task=NAME). Two task kinds:
 *  - pair: a muted video against N candidate tracks on one clock (the video's). Keys 1..N make a track
 *    audible (and pick it) without losing the playhead; 0 or N picks "none fits". An optional hum (H)
 *    is recorded with MediaRecorder and uploaded before the submit.
 *  - bgm: a speech + music mix (X), the speech alone (V) or the music alone (B) on one clock; a 1-5
 *    rating that unlocks after the mix has played for the task's min_play_s; optional reason tags.
 * Every submit carries a client-made id, kept in localStorage until acknowledged and retried with
 * backoff on network errors and 5xx, so a label is never lost. The submit's answer holds the next
 * item, which starts loading at once.
 *
 * window.avs is a read-only view of the state, for tests and benchmarks.
 */
(() => {
  "use strict";

  const ANCHORS = {
    1: "Clashes with the speech",
    2: "Poor fit",
    3: "Acceptable",
    4: "Good fit",
    5: "Made for it",
  };
  const SKIP_PRESETS = [
    "The media does not play",
    "I cannot judge this one",
    "Unsuitable or offensive content",
    "Broken or silent audio",
  ];
  const SLOTS = ["mix", "speech", "bgm"];
  const SLOT_KEYS = { x: 0, v: 1, b: 2 };
  const SLOT_NAMES = { mix: "Mix", speech: "Speech alone", bgm: "Music alone" };
  const DRIFT_S = 0.06; // correct an audible track that drifts more than this from the video
  const TICK_MS = 250; // sync and transport refresh
  const SEEK_STEP_S = 5;
  const HUM_MAX_S = 30;
  const PENDING_KEY = "avs.pending";
  const TOKEN_KEY = "avs.token";

  const $ = (id) => document.getElementById(id);
  const noop = () => {};

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  function fmtTime(s) {
    if (!Number.isFinite(s) || s < 0) s = 0;
    const m = Math.floor(s / 60);
    return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }

  function ago(epochS) {
    const d = Math.max(0, Date.now() / 1000 - epochS);
    if (d < 60) return "just now";
    if (d < 3600) return `${Math.floor(d / 60)} min ago`;
    if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
    return `${Math.floor(d / 86400)} d ago`;
  }

  // ------------------------------------------------------------------------------------------- state
  const S = {
    token: sessionStorage.getItem(TOKEN_KEY),
    me: null,
    view: null,
    task: null, // {name, kind, instructions, min_play_s, progress}
    a: null, // the current assignment
    gen: 0, // item generation: media events of an older item are ignored
    ready: false,
    shownAt: null,
    readyAt: null,
    readyCount: 0,
    media: [], // media elements of the current item
    audios: [], // pair: candidate tracks; bgm: mix, speech, bgm
    active: 0, // pair: audible candidate; bgm: index into SLOTS
    choice: undefined, // pair: index shown, null = none fits, undefined = not chosen yet
    rating: null,
    tags: new Set(),
    playedMs: 0,
    lastT: null, // last currentTime of the element whose playing time counts
    clientId: null,
    busy: false, // a submit, skip or undo is in flight
    saveState: "idle",
    submitT0: null,
    timings: [], // submit keypress -> next item's media all loaded (ms)
    submitLog: [], // {from: lease submitted, lease: the next one, t0, ready} (performance.now() ms)
    submitFrom: null,
    progress: null,
    heartbeat: null,
    mediaError: null,
    lead: 0.02, // seek lead for the audible track, learnt from the residual drift after each seek
    lastSeekAt: 0,
    seeks: 0,
    recent: [],
    recentDirty: false,
    lastMessage: "",
    done: false,
  };

  const H = { state: "idle", recorder: null, stream: null, chunks: [], t0: 0, timer: null, url: null,
              sha256: null, duration: null, warnings: [], error: null, uploading: null, gen: 0 };

  // --------------------------------------------------------------------------------------------- api
  class HttpError extends Error {
    constructor(status, message, data) {
      super(message);
      this.status = status;
      this.data = data;
    }
  }
  class NetError extends Error {}

  function errorText(data, fallback) {
    if (!data) return fallback;
    if (typeof data.error === "string") return data.error;
    if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg || String(d)).join("; ");
    if (typeof data.detail === "string") return data.detail;
    return fallback;
  }

  async function api(method, path, body, opts = {}) {
    const headers = { Accept: "application/json" };
    if (S.token) headers.Authorization = `Bearer ${S.token}`;
    let payload;
    if (opts.raw) {
      payload = body;
      if (opts.type) headers["Content-Type"] = opts.type;
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    let res;
    try {
      res = await fetch(`api/${path}`, { method, headers, body: payload, credentials: "same-origin", cache: "no-store" });
    } catch (err) {
      throw new NetError((err && err.message) || "network error");
    }
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    if (!res.ok) throw new HttpError(res.status, errorText(data, `${res.status} ${res.statusText}`), data);
    return data;
  }

  const retryable = (err) =>
    err instanceof NetError || (err instanceof HttpError && (err.status >= 500 || err.status === 408 || err.status === 429));

  function pauseFor(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        window.removeEventListener("online", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      window.addEventListener("online", done);
    });
  }

  /** fn() again and again on network errors and 5xx, with backoff; other errors are thrown. */
  async function withRetry(fn, onRetry = noop, maxAttempts = Infinity) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!retryable(err) || attempt >= maxAttempts) throw err;
        const wait = Math.min(10000, 300 * 2 ** (attempt - 1)) * (0.8 + 0.4 * Math.random());
        onRetry(attempt, wait, err);
        await pauseFor(wait);
      }
    }
  }

  const enc = encodeURIComponent;

  function mediaUrl(a, slot) {
    // a short-lived token for this lease's media alone (never the session token, which would end up in
    // logs and history); it also works inside an iframe whose third-party cookies are blocked
    return `api/media/${a.lease_id}/${enc(slot)}?t=${enc(a.media_token)}`;
  }

  // ---------------------------------------------------------------------------------------- feedback
  let toastTimer = null;
  function toast(message, kind = "info", ms = 4500) {
    S.lastMessage = message;
    const t = $("toast");
    t.textContent = message;
    t.dataset.kind = kind;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (t.hidden = true), ms);
  }

  function notice(message, kind = "warn") {
    S.lastMessage = message;
    const n = $("notice");
    if (!message) {
      n.hidden = true;
      return;
    }
    n.textContent = message;
    n.dataset.kind = kind;
    n.hidden = false;
  }

  let saveTimer = null;
  function setSave(state, text) {
    S.saveState = state;
    const pill = $("save-pill");
    pill.dataset.state = state;
    pill.textContent = text || { idle: "", saving: "Saving…", retrying: "Saving…", saved: "Saved ✓", error: "Not saved" }[state];
    clearTimeout(saveTimer);
    if (state === "saved") saveTimer = setTimeout(() => { if (S.saveState === "saved") setSave("idle"); }, 2500);
  }

  // ------------------------------------------------------------------------------------------ views
  function setView(view) {
    S.view = view;
    for (const v of ["login", "tasks", "label"]) $(`view-${v}`).hidden = v !== view;
    $("topbar-task").hidden = view !== "label";
    $("logout").hidden = view === "login";
    if (view !== "label") closeItem();
    const active = document.activeElement;
    if (active && active !== document.body && view !== "login") active.blur();
  }

  function renderUser() {
    $("who").textContent = S.me ? S.me.name : "";
    const admin = $("admin-link");
    admin.hidden = !(S.me && S.me.role === "admin");
    admin.href = document.body.dataset.adminUrl || "../";
    admin.title = "The Admin tab of the AV Studio app: tasks, users, agreement, export";
  }

  function showLogin(message) {
    setView("login");
    S.me = null;
    renderUser();
    $("login-error").textContent = message || "";
    setTimeout(() => $("login-name").focus(), 0);
  }

  async function loadMe() {
    try {
      S.me = await withRetry(() => api("GET", "me"), (n) => toast(`Cannot reach the server; trying again (${n})…`, "error"));
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) {
        showLogin();
        return null;
      }
      toast(err.message, "error");
      return null;
    }
    renderUser();
    return S.me;
  }

  async function route() {
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("token");
    if (token) {
      S.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      params.delete("token");
      history.replaceState(null, "", location.pathname + location.search + (params.toString() ? `#${params}` : ""));
    }
    const me = await loadMe();
    if (!me) return;
    const task = params.get("task");
    if (task) openTask(task);
    else showTasks();
  }

  function kindLabel(kind) {
    return kind === "pair" ? "Pair · video ↔ music" : kind === "bgm" ? "BGM fit · speech + music" : kind;
  }

  function showTasks() {
    setView("tasks");
    S.task = null;
    const grid = $("task-grid");
    grid.replaceChildren();
    const tasks = (S.me && S.me.tasks) || [];
    $("tasks-empty").hidden = tasks.length > 0;
    tasks.forEach((t, i) => {
      const p = t.progress || { labelled: 0, open: 0 };
      const total = p.labelled + p.open;
      const pct = total ? Math.round((100 * p.labelled) / total) : 100;
      const first = (t.instructions || "").split(/(?<=[.!?])\s/)[0];
      grid.append(h("a", { class: "card task-card", href: `#task=${enc(t.name)}`, dataset: { task: t.name } },
        h("div", { class: "task-card-head" },
          i < 9 ? h("kbd", { text: String(i + 1) }) : null,
          h("h2", { text: t.name }),
          h("span", { class: `kind-badge kind-${t.kind}`, text: kindLabel(t.kind) })),
        h("p", { class: "muted", text: first }),
        h("div", { class: "progress" },
          h("div", { class: "progress-bar" }, h("div", { class: "progress-fill", style: `width:${pct}%` })),
          h("span", { text: p.open ? `${p.labelled} labelled · ${p.open} left` : `${p.labelled} labelled · all done` }))));
    });
  }

  // ---------------------------------------------------------------------------------------- a task
  async function openTask(name) {
    const meta = ((S.me && S.me.tasks) || []).find((t) => t.name === name);
    if (!meta) {
      toast(`There is no task named “${name}”.`, "error");
      location.hash = "";
      return;
    }
    setView("label");
    S.task = meta;
    S.a = null;
    notice("");
    $("task-name").textContent = meta.name;
    $("task-kind").textContent = kindLabel(meta.kind);
    $("task-kind").className = `kind-badge kind-${meta.kind}`;
    setProgress(meta.progress);
    renderInstructions();
    renderKeys();
    S.recent = [];
    renderRecent();
    if (await flushPending()) return;
    await loadNext();
    refreshRecent();
  }

  function setProgress(p) {
    if (!p) return;
    S.progress = p;
    if (S.task && S.me) {
      const t = S.me.tasks.find((x) => x.name === S.task.name);
      if (t) t.progress = p;
    }
    const total = p.labelled + p.open;
    $("progress-fill").style.width = `${total ? (100 * p.labelled) / total : 100}%`;
    $("progress-text").textContent = `${p.labelled} labelled · ${p.open} left`;
  }

  async function loadNext(t0 = null) {
    if (!S.task) return;
    const task = S.task.name;
    try {
      const r = await withRetry(() => api("POST", `tasks/${enc(task)}/next`),
        (n) => setSave("retrying", `Connecting… (${n})`));
      if (!S.task || S.task.name !== task) return;
      if (S.saveState === "retrying") setSave("idle");
      setProgress(r.progress);
      showItem(r.assignment, t0);
    } catch (err) {
      handleError(err);
    }
  }

  function handleError(err) {
    if (err instanceof HttpError && err.status === 401) {
      showLogin(err.message);
    } else if (err instanceof HttpError && err.status === 403) {
      closeItem();
      showDone(err.message);
    } else {
      toast(err.message || String(err), "error");
    }
  }

  // ------------------------------------------------------------------------------------- an item
  function audioBox() {
    let box = $("media-box");
    if (!box) {
      box = h("div", { id: "media-box", hidden: true });
      document.body.append(box);
    }
    return box;
  }

  function release(el) {
    el.pause();
    el.removeAttribute("src");
    el.load(); // frees the connection and the decoder
    el.remove();
  }

  function closeItem() {
    stopHeartbeat();
    humReset();
    const v = $("video");
    if (!v.paused) v.pause();
    for (const el of S.audios) release(el);
    S.audios = [];
    S.media = [];
    S.ready = false;
  }

  function newAudio(id, src) {
    const el = new Audio();
    el.id = id;
    el.preload = "auto";
    el.src = src;
    audioBox().append(el);
    return el;
  }

  function showItem(a, t0 = null) {
    if (!a) {
      closeItem();
      S.gen++;
      showDone();
      return;
    }
    // the next item's media are on the critical path: their loads start before anything else is done
    const old = S.audios;
    for (const el of old) {
      el.pause();
      el.id = "";
    }
    if (a.kind === "pair") loadPair(a);
    else loadBgm(a);
    for (const el of old) release(el);
    stopHeartbeat();
    humReset();
    S.gen++;
    S.a = a;
    S.done = false;
    $("done").hidden = true;
    document.querySelector(".work").hidden = false;
    Object.assign(S, { choice: undefined, rating: null, playedMs: 0, lastT: null, clientId: null, mediaError: null,
                       ready: false, readyAt: null, shownAt: performance.now(), submitT0: t0, active: 0 });
    S.tags = new Set();
    $("pane-pair").hidden = a.kind !== "pair";
    $("pane-bgm").hidden = a.kind !== "bgm";
    if (a.kind === "pair") setupPair();
    else setupBgm();
    renderChoice();
    startHeartbeat(a);
    waitReady(S.gen);
  }

  function showDone(message) {
    S.a = null;
    S.done = true;
    document.querySelector(".work").hidden = true;
    $("done").hidden = false;
    const p = S.progress;
    $("done-text").textContent = message ||
      `Nothing is left for you on this task right now${p ? ` — you labelled ${p.labelled}` : ""}. Thank you!`;
    refreshRecent();
  }

  function mediaReady(el) {
    return new Promise((resolve) => {
      if (el.readyState >= 2) return resolve(true);
      const done = (ok) => () => {
        el.removeEventListener("loadeddata", yes);
        el.removeEventListener("canplay", yes);
        el.removeEventListener("error", no);
        resolve(ok);
      };
      const yes = done(true);
      const no = done(false);
      el.addEventListener("loadeddata", yes);
      el.addEventListener("canplay", yes);
      el.addEventListener("error", no);
    });
  }

  function waitReady(gen) {
    $("pair-loading").hidden = false;
    $("bgm-loading").hidden = false;
    Promise.all(S.media.map(mediaReady)).then((oks) => {
      if (gen !== S.gen) return;
      const now = performance.now();
      S.ready = true;
      S.readyAt = now;
      S.readyCount++;
      if (S.submitT0 !== null) {
        S.timings.push(now - S.submitT0);
        S.submitLog.push({ from: S.submitFrom, lease: S.a.lease_id, t0: S.submitT0, ready: now });
        S.submitT0 = null;
      }
      $("pair-loading").hidden = true;
      $("bgm-loading").hidden = true;
      if (oks.includes(false)) {
        S.mediaError = "Some of this item's media cannot be played here. Skip it (S) with the reason “The media does not play”.";
        notice(S.mediaError, "error");
      }
      play();
      if (S.recentDirty) refreshRecent();
    });
  }

  // -------------------------------------------------------------------------------------- pair
  function loadPair(a) {
    const v = $("video");
    if (!v.paused) v.pause();
    v.src = mediaUrl(a, a.media.video);
    S.audios = a.media.candidates.map((slot, i) => newAudio(`track-${i}`, mediaUrl(a, slot)));
    S.media = [v, ...S.audios];
  }

  function setupPair() {
    for (const el of S.audios) el.addEventListener("seeked", () => (S.lastSeekAt = performance.now()));
    renderTracks();
    renderTransport("pair-transport", () => $("video"));
    humRender();
  }

  function pick(i) {
    if (!S.a || S.a.kind !== "pair" || S.busy) return;
    const n = S.audios.length;
    if (i !== null && (i < 0 || i >= n)) {
      toast(`There are ${n} tracks: press 1 to ${n}, or 0 for none fits.`);
      return;
    }
    S.choice = i;
    if (i !== null) setActiveTrack(i);
    renderTracks();
    renderChoice();
  }

  /** Make candidate i the audible track, at the video's playhead. */
  function setActiveTrack(i) {
    S.active = i;
    S.audios.forEach((el, k) => { if (k !== i && !el.paused) el.pause(); });
    alignActive(true);
    renderTracks();
  }

  /** Keep the audible track on the video's clock: follow play/pause and correct drift over DRIFT_S. */
  function alignActive(force = false) {
    const v = $("video");
    const el = S.audios[S.active];
    if (!el || !S.a || S.a.kind !== "pair") return;
    S.audios.forEach((x, k) => { if (k !== S.active && !x.paused) x.pause(); });
    if (H.state === "recording" || v.paused || v.seeking || v.readyState < 2) {
      if (!el.paused) el.pause();
      if (el.readyState >= 1 && Math.abs(el.currentTime - v.currentTime) > DRIFT_S) el.currentTime = v.currentTime;
      return;
    }
    const t = v.currentTime;
    if (el.duration && t >= el.duration - 0.05) { // the track is shorter than the video: silence until it loops
      if (!el.paused) el.pause();
      return;
    }
    const drift = el.currentTime - t;
    if (force || el.paused || Math.abs(drift) > DRIFT_S) {
      if (!force && !el.paused && !el.seeking && performance.now() - S.lastSeekAt < 1500) {
        // still off after our last seek: the seek itself takes time; learn how far ahead to aim
        S.lead = Math.min(0.3, Math.max(0, S.lead - drift * 0.8));
      }
      if (!el.seeking || force) {
        el.currentTime = Math.max(0, t + (el.paused ? 0 : S.lead));
        S.seeks++;
      }
    }
    if (el.paused) el.play().catch(noop);
  }

  function renderTracks() {
    const box = $("tracks");
    box.replaceChildren();
    const v = $("video");
    S.audios.forEach((el, i) => {
      const active = i === S.active && H.state !== "recording";
      const playing = active && !v.paused;
      box.append(h("button", {
        type: "button", class: `track${active ? " active" : ""}${playing ? " playing" : ""}${S.choice === i ? " chosen" : ""}`,
        role: "radio", "aria-checked": String(S.choice === i), onclick: (e) => { e.currentTarget.blur(); pick(i); },
      },
      h("kbd", { text: String(i + 1) }),
      h("span", { class: "track-name", text: `Track ${i + 1}` }),
      h("span", { class: "eq", "aria-hidden": "true" }, h("i"), h("i"), h("i"), h("i")),
      h("span", { class: "track-state", text: S.choice === i ? "your pick" : active ? "listening" : "" })));
    });
    box.append(h("button", {
      type: "button", class: `track none${S.choice === null ? " chosen" : ""}`, role: "radio",
      "aria-checked": String(S.choice === null), onclick: (e) => { e.currentTarget.blur(); pick(null); },
    }, h("kbd", { text: "0" }), h("span", { class: "track-name", text: "None fits" }),
    h("span", { class: "track-state", text: S.choice === null ? "your pick" : "" })));
  }

  // --------------------------------------------------------------------------------------- bgm
  function loadBgm(a) {
    const v = $("video");
    if (v.getAttribute("src")) { // a Pair item was open before: stop its video
      v.pause();
      v.removeAttribute("src");
      v.load();
    }
    S.audios = SLOTS.map((slot) => {
      const el = newAudio(`slot-${slot}`, mediaUrl(a, a.media[slot]));
      el.loop = true;
      return el;
    });
    S.media = S.audios.slice();
  }

  function setupBgm() {
    const mix = S.audios[0];
    mix.addEventListener("timeupdate", () => countPlay(mix));
    for (const ev of ["seeking", "play"]) mix.addEventListener(ev, () => (S.lastT = mix.currentTime));
    for (const el of S.audios) {
      el.addEventListener("play", renderSlots);
      el.addEventListener("pause", renderSlots);
    }
    renderSlots();
    renderRatings();
    renderTags();
    renderUnlock();
    renderTransport("bgm-transport", () => S.audios[S.active]);
  }

  /** Real playing time, from the media clock: pauses, stalls and seeks do not count. */
  function countPlay(el) {
    const t = el.currentTime;
    if (S.lastT !== null && !el.paused && !el.seeking) {
      const d = t - S.lastT;
      if (d > 0 && d < 1.0) {
        S.playedMs += d * 1000;
        if (S.a && S.a.kind === "bgm") renderUnlock();
      }
    }
    S.lastT = t;
  }

  const minPlayMs = () => (S.a ? (S.a.min_play_s || 0) * 1000 : 0);
  const unlocked = () => !S.a || S.a.kind !== "bgm" || S.playedMs >= minPlayMs();

  function setSlot(i) {
    if (!S.a || S.a.kind !== "bgm") return;
    const prev = S.audios[S.active];
    const next = S.audios[i];
    if (i !== S.active) {
      const t = prev.currentTime;
      prev.pause();
      if (next.readyState >= 1) next.currentTime = t;
      S.active = i;
    }
    next.play().catch(noop);
    renderSlots();
    renderTransport("bgm-transport", () => S.audios[S.active]);
  }

  function renderSlots() {
    if (!S.a || S.a.kind !== "bgm") return;
    const playing = S.audios[S.active] && !S.audios[S.active].paused;
    document.querySelectorAll("#slots .slot").forEach((b, i) => {
      b.classList.toggle("active", i === S.active);
      b.setAttribute("aria-selected", String(i === S.active));
    });
    const meter = $("bgm-meter");
    meter.replaceChildren(
      h("div", { class: `now${playing ? " playing" : ""}` },
        h("span", { class: "eq big", "aria-hidden": "true" }, h("i"), h("i"), h("i"), h("i"), h("i")),
        h("div", {}, h("div", { class: "now-label", text: playing ? "Now hearing" : "Paused" }),
          h("div", { class: "now-slot", text: SLOT_NAMES[SLOTS[S.active]] }))));
  }

  function rate(r) {
    if (!S.a || S.a.kind !== "bgm" || S.busy) return;
    if (!unlocked()) {
      const left = Math.ceil((minPlayMs() - S.playedMs) / 1000);
      toast(`Listen to the mix a little longer first: ${left} s to go.`);
      return;
    }
    S.rating = r;
    renderRatings();
    renderChoice();
  }

  function toggleTag(i) {
    if (!S.a || S.a.kind !== "bgm" || S.busy) return;
    const tag = S.a.tags[i];
    if (!tag) return;
    if (S.tags.has(tag)) S.tags.delete(tag);
    else S.tags.add(tag);
    renderTags();
    renderChoice();
  }

  function renderRatings() {
    const box = $("ratings");
    box.replaceChildren();
    const locked = !unlocked();
    box.classList.toggle("locked", locked);
    for (let r = 1; r <= 5; r++) {
      box.append(h("button", {
        type: "button", class: `rating${S.rating === r ? " chosen" : ""}`, role: "radio",
        "aria-checked": String(S.rating === r), "aria-disabled": String(locked),
        onclick: (e) => { e.currentTarget.blur(); rate(r); },
      }, h("span", { class: "rating-num", text: String(r) }), h("span", { class: "rating-anchor", text: ANCHORS[r] })));
    }
  }

  function renderTags() {
    const box = $("tags");
    box.replaceChildren(h("span", { class: "tags-label", text: "Why? (optional)" }));
    ((S.a && S.a.tags) || []).forEach((tag, i) => {
      box.append(h("button", {
        type: "button", class: `chip${S.tags.has(tag) ? " on" : ""}`, "aria-pressed": String(S.tags.has(tag)),
        onclick: (e) => { e.currentTarget.blur(); toggleTag(i); },
      }, h("kbd", { class: "small", text: `⇧${i + 1}` }), tag));
    });
  }

  function renderUnlock() {
    const need = minPlayMs();
    const box = $("unlock");
    if (!need) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const done = S.playedMs >= need;
    if (done && !box.classList.contains("unlocked") && /longer first/.test($("toast").textContent)) $("toast").hidden = true;
    box.classList.toggle("unlocked", done);
    $("unlock-fill").style.width = `${Math.min(100, (100 * S.playedMs) / need)}%`;
    $("unlock-text").textContent = done
      ? "Rating unlocked"
      : `Listen to the mix: ${(S.playedMs / 1000).toFixed(1)} / ${(need / 1000).toFixed(0)} s, then rate`;
    const ratings = $("ratings");
    if (ratings.classList.contains("locked") === done) renderRatings();
  }

  // ---------------------------------------------------------------------------------- playback
  function clockEl() {
    if (!S.a) return null;
    return S.a.kind === "pair" ? $("video") : S.audios[S.active];
  }

  function play() {
    const el = clockEl();
    if (!el) return;
    const p = el.play();
    if (p && p.catch) {
      p.then(() => { $("stage-hint").hidden = true; }).catch(() => {
        $("stage-hint").hidden = false; // autoplay refused until the user acts: Space starts it
      });
    }
    if (S.a.kind === "pair") alignActive(true);
  }

  function togglePlay() {
    const el = clockEl();
    if (!el) return;
    if (el.paused) play();
    else el.pause();
  }

  function seekBy(ds) {
    const el = clockEl();
    if (!el || !Number.isFinite(el.duration)) return;
    el.currentTime = Math.min(Math.max(0, el.currentTime + ds), Math.max(0, el.duration - 0.05));
  }

  function pauseAll() {
    const v = $("video");
    if (!v.paused) v.pause();
    for (const el of S.audios) if (!el.paused) el.pause();
  }

  function renderTransport(id, getEl) {
    const box = $(id);
    const button = h("button", { type: "button", class: "play", "aria-label": "Play or pause (Space)",
                                 onclick: (e) => { e.currentTarget.blur(); togglePlay(); } });
    const fill = h("div", { class: "seek-fill" });
    const bar = h("div", { class: "seek", title: "Seek (← →)" }, fill);
    bar.addEventListener("click", (e) => {
      const el = getEl();
      if (!el || !Number.isFinite(el.duration)) return;
      const r = bar.getBoundingClientRect();
      el.currentTime = ((e.clientX - r.left) / r.width) * el.duration;
    });
    const time = h("span", { class: "time" });
    box.replaceChildren(button, h("kbd", { class: "small", text: "Space" }), bar, time);
    box._update = () => {
      const el = getEl();
      if (!el) return;
      const playing = !el.paused;
      button.textContent = playing ? "❚❚" : "▶";
      button.classList.toggle("playing", playing);
      const dur = Number.isFinite(el.duration) ? el.duration : 0;
      fill.style.width = `${dur ? (100 * el.currentTime) / dur : 0}%`;
      time.textContent = `${fmtTime(el.currentTime)} / ${fmtTime(dur)}`;
    };
    box._update();
  }

  function tick() {
    if (S.view !== "label" || !S.a) return;
    if (S.a.kind === "pair") {
      const v = $("video");
      countPlay(v);
      alignActive(false);
      const playing = !v.paused;
      const box = $("tracks");
      const active = box.querySelector(".track.active");
      if (active) active.classList.toggle("playing", playing);
      $("pair-transport")._update && $("pair-transport")._update();
    } else {
      $("bgm-transport")._update && $("bgm-transport")._update();
    }
  }

  // --------------------------------------------------------------------------------------- hum
  function humStatus(state, text) {
    const s = $("hum-status");
    s.dataset.state = state;
    s.replaceChildren(text);
  }

  function humRender() {
    const rec = H.state === "recording";
    $("hum-button").classList.toggle("recording", rec);
    $("hum-label").textContent = rec ? "Stop recording" : H.url ? "Record again" : "Record a hum";
    $("hum-playback").hidden = !H.url || rec;
    if (H.state === "idle") humStatus("idle", "Optional: hum the melody you would want, before you choose.");
  }

  function humReset() {
    H.gen++;
    if (H.recorder && H.recorder.state !== "inactive") {
      try { H.recorder.stop(); } catch (_) { /* already stopped */ }
    }
    if (H.stream) H.stream.getTracks().forEach((t) => t.stop());
    clearInterval(H.timer);
    if (H.url) URL.revokeObjectURL(H.url);
    Object.assign(H, { state: "idle", recorder: null, stream: null, chunks: [], url: null, sha256: null, duration: null,
                       warnings: [], error: null, uploading: null });
    const pb = $("hum-playback");
    pb.pause();
    pb.removeAttribute("src");
    humRender();
  }

  async function toggleHum() {
    if (!S.a || S.a.kind !== "pair" || S.busy) return;
    if (H.state === "recording") {
      stopHum();
      return;
    }
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      humStatus("error", "This browser cannot record sound.");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    } catch (err) {
      humStatus("error", err && err.name === "NotAllowedError"
        ? "The microphone was refused: allow it in the browser's site settings to record a hum."
        : "No microphone could be opened.");
      return;
    }
    humReset(); // a retake replaces the earlier take
    const gen = H.gen;
    const mime = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]
      .find((m) => MediaRecorder.isTypeSupported(m));
    const rec = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
    rec.ondataavailable = (e) => { if (gen === H.gen && e.data && e.data.size) H.chunks.push(e.data); };
    rec.onstop = () => humStopped(gen, rec);
    Object.assign(H, { stream, recorder: rec, chunks: [], state: "recording", t0: performance.now() });
    rec.start(250);
    alignActive(); // the candidate tracks would leak into the microphone: silent while recording
    renderTracks();
    H.timer = setInterval(() => {
      const s = (performance.now() - H.t0) / 1000;
      humStatus("recording", `● Recording ${s.toFixed(1)} s — press H to stop (at most ${HUM_MAX_S} s)`);
      if (s >= HUM_MAX_S) stopHum();
    }, 200);
    humStatus("recording", "● Recording — press H to stop");
    humRender();
  }

  function stopHum() {
    clearInterval(H.timer);
    if (H.recorder && H.recorder.state !== "inactive") H.recorder.stop();
    if (H.stream) H.stream.getTracks().forEach((t) => t.stop());
  }

  function humStopped(gen, rec) {
    if (gen !== H.gen) return;
    const blob = new Blob(H.chunks, { type: (rec.mimeType || "audio/webm").split(";")[0] });
    H.url = URL.createObjectURL(blob);
    $("hum-playback").src = H.url;
    H.state = "uploading";
    humRender();
    humStatus("uploading", "Checking your hum…");
    alignActive(true);
    renderTracks();
    H.uploading = uploadHum(gen, blob);
  }

  async function uploadHum(gen, blob) {
    try {
      const r = await withRetry(() => api("POST", "hums", blob, { raw: true, type: blob.type || "application/octet-stream" }),
        (n) => humStatus("uploading", `Uploading your hum… (retry ${n})`), 5);
      if (gen !== H.gen) return;
      if (!r || r.error || !r.sha256) throw new Error((r && r.error) || "the hum was not accepted");
      Object.assign(H, { state: "ok", sha256: r.sha256, duration: r.duration_s, warnings: r.warnings || [] });
      const parts = [h("span", { class: "ok", text: `✓ Hum saved (${Number(r.duration_s).toFixed(1)} s); it goes with your label.` })];
      for (const w of H.warnings) parts.push(h("span", { class: "warn", text: ` ⚠ ${w}` }));
      parts.push(" Press H to record again.");
      humStatus(H.warnings.length ? "warn" : "ok", h("span", {}, parts));
    } catch (err) {
      if (gen !== H.gen) return;
      Object.assign(H, { state: "error", sha256: null, error: err.message || String(err) });
      humStatus("error", `✗ ${H.error} Press H to record again; you may also label without a hum.`);
    } finally {
      if (gen === H.gen) {
        H.uploading = null;
        humRender();
      }
    }
  }

  // ---------------------------------------------------------------------------- submit and skip
  function renderChoice() {
    const s = $("choice-summary");
    if (!S.a) {
      s.textContent = "";
      return;
    }
    if (S.a.kind === "pair") {
      const n = S.audios.length;
      s.textContent = S.choice === undefined ? `Pick a track: 1–${n}, or 0 if none fits`
        : S.choice === null ? "Your pick: none fits" : `Your pick: Track ${S.choice + 1}`;
    } else if (!unlocked()) {
      s.textContent = "Rating unlocks once the mix has played";
    } else {
      s.textContent = S.rating === null ? "Rate the fit: 1–5"
        : `Your rating: ${S.rating} · ${ANCHORS[S.rating]}${S.tags.size ? ` · ${[...S.tags].join(", ")}` : ""}`;
    }
    $("submit-button").classList.toggle("ready", S.a.kind === "pair" ? S.choice !== undefined : S.rating !== null);
  }

  function savePending(p) {
    try { localStorage.setItem(PENDING_KEY, JSON.stringify(p)); } catch (_) { /* private mode: memory only */ }
  }
  function loadPending() {
    try { return JSON.parse(localStorage.getItem(PENDING_KEY) || "null"); } catch (_) { return null; }
  }
  function clearPending() {
    try { localStorage.removeItem(PENDING_KEY); } catch (_) { /* nothing kept */ }
  }

  async function submit(t0 = performance.now()) {
    if (!S.a || S.busy) return;
    const a = S.a;
    let body;
    if (a.kind === "pair") {
      if (S.choice === undefined) {
        toast(`Pick a track first: 1 to ${S.audios.length}, or 0 if none fits.`);
        return;
      }
      if (H.state === "recording") stopHum();
      body = { choice: S.choice };
    } else {
      if (!unlocked()) {
        toast(`Listen to the mix for ${a.min_play_s} s before rating it.`);
        return;
      }
      if (S.rating === null) {
        toast("Rate the fit first: 1 to 5.");
        return;
      }
      body = { rating: S.rating, tags: [...S.tags] };
    }
    S.clientId = S.clientId || uuid(); // made once per label, reused by every retry
    Object.assign(body, {
      client_id: S.clientId,
      dwell_ms: Math.max(0, Math.round(t0 - (S.readyAt ?? S.shownAt))),
      played_ms: Math.round(S.playedMs),
      client_time: Date.now() / 1000,
    });
    if (a.kind === "pair" && (H.state === "uploading" || H.uploading || H.recorder && H.state === "recording")) {
      S.busy = true;
      setSave("saving", "Saving hum…");
      while (H.state === "recording" || H.uploading) {
        await (H.uploading || new Promise((r) => setTimeout(r, 50)));
        if (S.a !== a) return;
      }
      S.busy = false;
    }
    if (a.kind === "pair" && H.sha256) body.hum_sha256 = H.sha256;
    await send("submit", a, body, t0);
  }

  /** POST a submit or a skip until the server answers; the label waits in localStorage meanwhile. */
  async function send(kind, a, body, t0) {
    S.busy = true;
    S.submitFrom = a.lease_id;
    pauseAll();
    setSave("saving");
    savePending({ kind, task: a.task, lease_id: a.lease_id, body });
    let r;
    try {
      r = await withRetry(() => api("POST", `leases/${a.lease_id}/${kind}`, body),
        (n, wait) => setSave("retrying", `Saving… (retry ${n} in ${Math.ceil(wait / 1000)} s)`));
    } catch (err) {
      S.busy = false;
      if (err instanceof HttpError && err.status === 401) {
        setSave("error", "Not saved yet: sign in again");
        showLogin("Your session ended; sign in again and your label will be saved.");
        return;
      }
      clearPending();
      setSave("error");
      if (err instanceof HttpError && (err.status === 409 || err.status === 404)) {
        notice(err.message);
        await loadNext(t0);
        return;
      }
      toast(err.message || String(err), "error", 7000); // refused (400): fix the label and submit again
      return;
    }
    clearPending();
    S.busy = false;
    setSave("saved");
    setProgress(r.progress);
    if (S.a !== a) return;
    notice(r.notice || "");
    S.recentDirty = true;
    if (r.notice && !r.next) {
      showDone(r.notice);
      return;
    }
    showItem(r.next, t0);
  }

  /** A submit or skip made before a reload or a sign-in that was never acknowledged: send it now. */
  async function flushPending() {
    const p = loadPending();
    if (!p || !S.task || p.task !== S.task.name) return false;
    setSave("saving", "Saving your last label…");
    try {
      const r = await withRetry(() => api("POST", `leases/${p.lease_id}/${p.kind}`, p.body),
        (n, wait) => setSave("retrying", `Saving your last label… (retry ${n} in ${Math.ceil(wait / 1000)} s)`));
      clearPending();
      setSave("saved");
      toast("Your last label was saved.");
      setProgress(r.progress);
      S.recentDirty = true;
      showItem(r.next);
      refreshRecent();
      return true;
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) {
        showLogin(err.message);
        return true;
      }
      clearPending();
      setSave("error");
      notice(`Your last label could not be saved: ${err.message}`);
      return false;
    }
  }

  // skip: preset reasons or free text
  let skipPreset = null;
  function openSkip() {
    if (!S.a || S.busy) return;
    skipPreset = null;
    const box = $("skip-presets");
    box.replaceChildren(...SKIP_PRESETS.map((p, i) => h("button", {
      type: "button", class: "chip", dataset: { i: String(i) },
      onclick: () => { choosePreset(i); $("skip-text").focus(); },
    }, h("kbd", { class: "small", text: String(i + 1) }), p)));
    $("skip-text").value = "";
    $("skip-error").textContent = "";
    $("skip-modal").hidden = false;
    $("skip-text").focus();
  }

  function choosePreset(i) {
    skipPreset = skipPreset === i ? null : i;
    document.querySelectorAll("#skip-presets .chip").forEach((c, k) => c.classList.toggle("on", k === skipPreset));
  }

  function closeSkip() {
    $("skip-modal").hidden = true;
    document.activeElement && document.activeElement.blur();
  }

  function confirmSkip(t0) {
    const text = $("skip-text").value.trim();
    const preset = skipPreset === null ? "" : SKIP_PRESETS[skipPreset];
    const reason = preset && text ? `${preset}: ${text}` : preset || text;
    if (!reason) {
      $("skip-error").textContent = "Pick a reason (1–4) or type one.";
      return;
    }
    closeSkip();
    if (!S.a || S.busy) return;
    send("skip", S.a, { client_id: uuid(), reason }, t0);
  }

  function skipKey(e) {
    if (e.key === "Escape") {
      e.preventDefault();
      closeSkip();
    } else if (e.key === "Enter") {
      e.preventDefault();
      confirmSkip(e.timeStamp || performance.now());
    } else if (/^[1-9]$/.test(e.key) && !$("skip-text").value && Number(e.key) <= SKIP_PRESETS.length) {
      e.preventDefault();
      choosePreset(Number(e.key) - 1);
    }
  }

  // undo
  async function undo() {
    if (!S.task || S.busy) return;
    const task = S.task.name;
    const clientId = uuid();
    S.busy = true;
    pauseAll();
    setSave("saving", "Undoing…");
    try {
      const r = await withRetry(() => api("POST", `tasks/${enc(task)}/undo`, { client_id: clientId }),
        (n) => setSave("retrying", `Undoing… (retry ${n})`));
      S.busy = false;
      setSave("saved", "Undone");
      setProgress(r.progress);
      notice("");
      toast("Your last label was taken back: the item is here again, label it anew.");
      S.recentDirty = true;
      showItem(r.assignment);
    } catch (err) {
      S.busy = false;
      setSave("idle");
      if (err instanceof HttpError && err.status === 401) showLogin(err.message);
      else {
        toast(err.message || String(err), "error");
        if (S.a) play();
      }
    }
  }

  // heartbeats keep the lease while the item is open
  function startHeartbeat(a) {
    stopHeartbeat();
    const every = Math.max(3, (a.lease_s || 120) / 3) * 1000;
    S.heartbeat = setInterval(async () => {
      if (S.a !== a || S.busy) return; // a submit in flight: the item is being closed
      try {
        await api("POST", `leases/${a.lease_id}/heartbeat`);
      } catch (err) {
        if (S.a !== a || S.busy) return; // a submit in flight answers for itself
        if (err instanceof HttpError && err.status === 409) {
          notice(err.message);
          loadNext();
        } else if (err instanceof HttpError && err.status === 401) {
          showLogin(err.message);
        }
      }
    }, every);
  }

  function stopHeartbeat() {
    clearInterval(S.heartbeat);
    S.heartbeat = null;
  }

  // ----------------------------------------------------------------------------- recent labels
  async function refreshRecent() {
    S.recentDirty = false;
    if (!S.task) return;
    const task = S.task.name;
    try {
      const rows = await api("GET", `tasks/${enc(task)}/mine`);
      if (!S.task || S.task.name !== task) return;
      S.recent = rows;
      renderRecent();
    } catch (_) {
      S.recentDirty = true; // try again after the next item
    }
  }

  function valueText(row) {
    if (row.kind === "skip") return `Skipped: ${row.reason || ""}`;
    if (S.task.kind === "pair") {
      if (row.value === null || row.value === undefined) return "None fits";
      const k = (row.order || []).indexOf(row.value);
      return k >= 0 ? `Track ${k + 1}` : "a track";
    }
    const tags = row.tags && row.tags.length ? ` · ${row.tags.join(", ")}` : "";
    return `${row.value} · ${ANCHORS[row.value] || ""}${tags}`;
  }

  function renderRecent() {
    const list = $("recent");
    list.replaceChildren();
    if (!S.recent.length) {
      list.append(h("li", { class: "muted", text: "Nothing yet." }));
      return;
    }
    for (const row of S.recent.slice(0, 8)) {
      list.append(h("li", { class: `recent-row kind-${row.kind}` },
        h("div", { class: "recent-main" },
          h("span", { class: "recent-value", text: valueText(row) }),
          h("span", { class: "recent-key muted", text: `${row.item_key} · ${ago(row.created_at)}` })),
        row.revisable ? h("button", { type: "button", class: "link-button", text: "Revise",
                                      onclick: () => openRevise(row) }) : null));
    }
  }

  // revise one of the user's recent labels
  const R = { row: null, choice: undefined, rating: null, tags: new Set(), clientId: null, busy: false };

  function openRevise(row) {
    if (!row || !S.task) return;
    Object.assign(R, { row, clientId: uuid(), busy: false });
    if (S.task.kind === "pair") {
      const k = (row.order || []).indexOf(row.value);
      R.choice = row.value === null ? null : k >= 0 ? k : undefined;
    } else {
      R.rating = row.value;
      R.tags = new Set(row.tags || []);
    }
    $("revise-sub").textContent = `${row.item_key} — now: ${valueText(row)}`;
    $("revise-error").textContent = "";
    renderRevise();
    pauseAll();
    $("revise-modal").hidden = false;
    $("revise-card").focus();
  }

  function openReviseLatest() {
    const row = S.recent.find((r) => r.revisable);
    if (row) openRevise(row);
    else toast("No recent label of yours can be revised.");
  }

  function renderRevise() {
    const box = $("revise-options");
    box.replaceChildren();
    const tagBox = $("revise-tags");
    tagBox.replaceChildren();
    if (S.task.kind === "pair") {
      const n = (R.row.order || []).length;
      for (let i = 0; i < n; i++) {
        box.append(h("button", { type: "button", class: `chip${R.choice === i ? " on" : ""}`,
                                 onclick: () => { R.choice = i; renderRevise(); } },
          h("kbd", { class: "small", text: String(i + 1) }), `Track ${i + 1}`));
      }
      box.append(h("button", { type: "button", class: `chip${R.choice === null ? " on" : ""}`,
                               onclick: () => { R.choice = null; renderRevise(); } },
        h("kbd", { class: "small", text: "0" }), "None fits"));
    } else {
      for (let r = 1; r <= 5; r++) {
        box.append(h("button", { type: "button", class: `chip${R.rating === r ? " on" : ""}`,
                                 onclick: () => { R.rating = r; renderRevise(); } },
          h("kbd", { class: "small", text: String(r) }), ANCHORS[r]));
      }
      ((S.a && S.a.tags) || ["mood", "tempo", "too busy", "too loud", "genre"]).forEach((tag, i) => {
        tagBox.append(h("button", { type: "button", class: `chip${R.tags.has(tag) ? " on" : ""}`,
                                    onclick: () => { toggleReviseTag(tag); } },
          h("kbd", { class: "small", text: `⇧${i + 1}` }), tag));
      });
    }
  }

  function toggleReviseTag(tag) {
    if (R.tags.has(tag)) R.tags.delete(tag);
    else R.tags.add(tag);
    renderRevise();
  }

  function closeRevise() {
    $("revise-modal").hidden = true;
    document.activeElement && document.activeElement.blur();
  }

  async function saveRevise() {
    if (R.busy) return;
    const body = { client_id: R.clientId };
    if (S.task.kind === "pair") {
      if (R.choice === undefined) {
        $("revise-error").textContent = "Pick a track or none fits.";
        return;
      }
      body.choice = R.choice;
    } else {
      body.rating = R.rating;
      body.tags = [...R.tags];
    }
    R.busy = true;
    try {
      await withRetry(() => api("POST", `labels/${R.row.label_id}/revise`, body),
        (n) => ($("revise-error").textContent = `Saving… (retry ${n})`));
      closeRevise();
      toast("Label revised.");
      refreshRecent();
    } catch (err) {
      $("revise-error").textContent = err.message || String(err);
    } finally {
      R.busy = false;
    }
  }

  function reviseKey(e) {
    const tags = (S.a && S.a.tags) || ["mood", "tempo", "too busy", "too loud", "genre"];
    if (e.key === "Escape") closeRevise();
    else if (e.key === "Enter") saveRevise();
    else if (e.shiftKey && /^Digit[1-9]$/.test(e.code) && S.task.kind === "bgm") {
      const tag = tags[Number(e.code.slice(5)) - 1];
      if (tag) toggleReviseTag(tag);
    } else if (/^[0-9]$/.test(e.key)) {
      const d = Number(e.key);
      if (S.task.kind === "pair") {
        if (d === 0) R.choice = null;
        else if (d <= (R.row.order || []).length) R.choice = d - 1;
      } else if (d >= 1 && d <= 5) R.rating = d;
      renderRevise();
    } else return;
    e.preventDefault();
  }

  // ----------------------------------------------------------------------- instructions, keys
  function renderInstructions() {
    const box = $("instructions");
    box.replaceChildren();
    const text = (S.task.instructions || "").trim() || (S.task.kind === "pair"
      ? "Watch the video and listen to each candidate track on the same moment; pick the one that fits best, or none fits."
      : "Listen to the speech with the music under it and rate how well the music fits, 1 to 5.");
    box.append(h("p", { class: "instructions-text", text }));
    if (S.task.kind === "bgm" && !/1\s*=/.test(text)) {
      box.append(h("dl", { class: "anchors" },
        Object.entries(ANCHORS).map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])));
    }
    if (S.task.kind === "bgm" && S.task.min_play_s) {
      box.append(h("p", { class: "muted", text: `The rating unlocks after the mix has played for ${S.task.min_play_s} s.` }));
    }
  }

  function renderKeys() {
    const pair = S.task.kind === "pair";
    const keys = pair ? [
      [["1", "…", "N"], "listen to track N and pick it"],
      [["0"], "none fits (or N)"],
      [["Space"], "play / pause"],
      [["←", "→"], `seek ${SEEK_STEP_S} s`],
      [["H"], "record a hum / stop"],
      [["Enter"], "submit"],
      [["S"], "skip, with a reason"],
      [["U"], "undo your last label"],
      [["R"], "revise a recent label"],
      [["Esc"], "back to your tasks"],
    ] : [
      [["1", "…", "5"], "rate the fit"],
      [["⇧1", "…", "⇧5"], "reason tags"],
      [["X"], "hear the mix"],
      [["V"], "the speech alone"],
      [["B"], "the music alone"],
      [["Space"], "play / pause"],
      [["←", "→"], `seek ${SEEK_STEP_S} s`],
      [["Enter"], "submit"],
      [["S"], "skip, with a reason"],
      [["U"], "undo your last label"],
      [["R"], "revise a recent label"],
      [["Esc"], "back to your tasks"],
    ];
    $("keys").replaceChildren(...keys.flatMap(([ks, what]) => [
      h("dt", {}, ks.map((k) => (k === "…" ? h("span", { class: "muted", text: "–" }) : h("kbd", { text: k })))),
      h("dd", { text: what }),
    ]));
  }

  // ---------------------------------------------------------------------------------- keyboard
  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (!$("skip-modal").hidden) return skipKey(e);
    if (!$("revise-modal").hidden) return reviseKey(e);
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (S.view === "tasks") {
      const tasks = (S.me && S.me.tasks) || [];
      if (/^[1-9]$/.test(e.key) && Number(e.key) <= tasks.length) {
        e.preventDefault();
        location.hash = `task=${enc(tasks[Number(e.key) - 1].name)}`;
      }
      return;
    }
    if (S.view !== "label") return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    // Enter and Space on a focused link or button of the page chrome keep their usual meaning
    if ((key === "Enter" || key === " ") && t && t.closest && t.closest("a, .topbar, .recent, .done")) return;
    const pair = S.a && S.a.kind === "pair";
    const bgm = S.a && S.a.kind === "bgm";
    const stamp = e.timeStamp || performance.now();
    let handled = true;
    if (e.shiftKey && /^Digit[1-9]$/.test(e.code)) {
      if (bgm) toggleTag(Number(e.code.slice(5)) - 1);
      else handled = false;
    } else if (/^[0-9]$/.test(key)) {
      const d = Number(key);
      if (pair) pick(d === 0 ? null : d - 1);
      else if (bgm && d >= 1 && d <= 5) rate(d);
    } else {
      switch (key) {
        case "Enter": submit(stamp); break;
        case " ": togglePlay(); break;
        case "s": openSkip(); break;
        case "u": undo(); break;
        case "r": openReviseLatest(); break;
        case "n": if (pair) pick(null); else handled = false; break;
        case "h": if (pair) toggleHum(); else handled = false; break;
        case "x": case "v": case "b": if (bgm) setSlot(SLOT_KEYS[key]); else handled = false; break;
        case "Escape": location.hash = ""; break; // back to the task list
        case "ArrowLeft": seekBy(-SEEK_STEP_S); break;
        case "ArrowRight": seekBy(SEEK_STEP_S); break;
        default: handled = false;
      }
    }
    if (handled) e.preventDefault();
  }

  // ------------------------------------------------------------------------------------- wiring
  function wire() {
    document.addEventListener("keydown", onKey);
    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = $("login-name").value.trim();
      const password = $("login-password").value;
      $("login-error").textContent = "";
      $("login-submit").disabled = true;
      try {
        const r = await withRetry(() => api("POST", "login", { name, password }), noop, 4);
        S.token = r.token;
        sessionStorage.setItem(TOKEN_KEY, r.token);
        $("login-password").value = "";
        document.activeElement && document.activeElement.blur();
        const pending = loadPending();
        const hash = new URLSearchParams(location.hash.slice(1));
        if (pending && !hash.get("task")) location.hash = `task=${enc(pending.task)}`; // finish saving it
        else await route();
      } catch (err) {
        $("login-error").textContent = err.message || String(err);
      } finally {
        $("login-submit").disabled = false;
      }
    });
    $("logout").addEventListener("click", async () => {
      try { await api("POST", "logout"); } catch (_) { /* signed out locally anyway */ }
      S.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      history.replaceState(null, "", location.pathname);
      showLogin("You are signed out.");
    });
    $("brand").addEventListener("click", (e) => {
      e.preventDefault();
      location.hash = "";
    });
    $("done-back").addEventListener("click", (e) => {
      e.preventDefault();
      location.hash = "";
    });
    $("submit-button").addEventListener("click", (e) => { e.currentTarget.blur(); submit(e.timeStamp); });
    $("skip-button").addEventListener("click", (e) => { e.currentTarget.blur(); openSkip(); });
    $("undo-button").addEventListener("click", (e) => { e.currentTarget.blur(); undo(); });
    $("hum-button").addEventListener("click", (e) => { e.currentTarget.blur(); toggleHum(); });
    document.querySelectorAll("#slots .slot").forEach((b, i) =>
      b.addEventListener("click", (e) => { e.currentTarget.blur(); setSlot(i); }));
    $("skip-modal").addEventListener("click", (e) => { if (e.target === $("skip-modal")) closeSkip(); });
    $("skip-form").addEventListener("submit", (e) => e.preventDefault());
    $("revise-modal").addEventListener("click", (e) => { if (e.target === $("revise-modal")) closeRevise(); });
    const v = $("video");
    v.addEventListener("play", () => { alignActive(true); renderTracks(); $("stage-hint").hidden = true; });
    v.addEventListener("pause", () => { alignActive(); renderTracks(); });
    v.addEventListener("seeked", () => alignActive(true));
    v.addEventListener("seeking", () => { S.lastT = v.currentTime; });
    v.addEventListener("click", togglePlay);
    window.addEventListener("hashchange", route);
    window.addEventListener("beforeunload", (e) => {
      if (S.busy) {
        e.preventDefault();
        e.returnValue = "";
      }
    });
    setInterval(tick, TICK_MS);
  }

  const avs = Object.freeze({
    get view() { return S.view; },
    get task() { return S.task ? S.task.name : null; },
    get kind() { return S.a ? S.a.kind : null; },
    get leaseId() { return S.a ? S.a.lease_id : null; },
    get itemKey() { return S.a ? S.a.item_key : null; },
    get ready() { return S.ready; },
    get readyCount() { return S.readyCount; },
    get lastReady() { return S.readyAt; },
    get activeTrack() { return S.a ? S.active : null; },
    get activeSlot() { return S.a && S.a.kind === "bgm" ? SLOTS[S.active] : null; },
    get choice() { return S.choice; },
    get rating() { return S.rating; },
    get tags() { return [...S.tags]; },
    get playedMs() { return S.playedMs; },
    get unlocked() { return unlocked(); },
    get busy() { return S.busy; },
    get saveState() { return S.saveState; },
    get done() { return S.done; },
    get submitToReady() { return S.timings.slice(); },
    get submitLog() { return S.submitLog.map((x) => ({ ...x })); },
    get lastSubmitToReady() { return S.timings.length ? S.timings[S.timings.length - 1] : null; },
    get progress() { return S.progress ? { ...S.progress } : null; },
    get hum() { return { state: H.state, sha256: H.sha256, duration: H.duration, warnings: H.warnings.slice(), error: H.error }; },
    get message() { return S.lastMessage; },
    get mediaError() { return S.mediaError; },
    get seeks() { return S.seeks; },
    get clock() {
      if (!S.a) return null;
      const el = S.audios[S.active];
      const master = clockEl();
      return { master: master ? master.currentTime : null, masterPaused: master ? master.paused : null,
               active: el ? el.currentTime : null, activePaused: el ? el.paused : null };
    },
  });
  Object.defineProperty(window, "avs", { value: avs, writable: false, configurable: false, enumerable: true });

  wire();
  route();
})();
