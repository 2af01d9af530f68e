// FaLa patient page: two image panes (sagittal with the graded level highlighted, and the
// level's axial image or any chosen image) with zoom, pan and window/level, and the Table 3
// forms, graded by keyboard or mouse, saved at once with optimistic locking.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("fala-data").textContent);
  const slotQuery = data.slot === "consensus" ? "?slot=consensus" : "";
  const FIELDS = data.fields.map((f) => f.name);
  const state = {
    level: 0,
    field: 0,
    gradings: {}, // level -> {grades, version}
    pending: {}, // level -> {field: value} not yet sent
    inflight: {}, // level -> bool
    failed: {}, // level -> message
    placing: false,
  };
  for (const lv of data.levels) {
    const g = data.gradings[lv];
    state.gradings[lv] = g
      ? { grades: { ...g.grades }, version: g.version }
      : { grades: Object.fromEntries(FIELDS.map((f) => [f, null])), version: 0 };
  }

  // ------------------------------------------------------------------ image panes
  class Pane {
    constructor(root) {
      this.root = root;
      this.canvas = root.querySelector("canvas");
      this.label = root.querySelector(".pane-label");
      this.wlLabel = root.querySelector(".wl");
      this.ctx = this.canvas.getContext("2d");
      this.image = null;
      this.pixels = null;
      this.overlay = null; // function(ctx, toScreen) drawing on top
      this.reset();
      this.bind();
      new ResizeObserver(() => this.draw()).observe(root);
    }
    reset() {
      this.zoom = 1;
      this.panX = 0;
      this.panY = 0;
      this.window = 255;
      this.center = 127.5;
      this.lut = null;
      this.draw();
    }
    show(info) {
      this.info = info;
      this.label.textContent = info.title;
      const img = new Image();
      img.onload = () => {
        this.image = img;
        const off = document.createElement("canvas");
        off.width = img.naturalWidth;
        off.height = img.naturalHeight;
        const octx = off.getContext("2d");
        octx.drawImage(img, 0, 0);
        this.source = octx.getImageData(0, 0, off.width, off.height);
        this.off = off;
        this.offctx = octx;
        this.reset();
      };
      img.src = info.url;
    }
    applyWindow() {
      if (!this.source) return;
      const lo = this.center - this.window / 2;
      const scale = 255 / Math.max(1, this.window);
      const lut = new Uint8ClampedArray(256);
      for (let v = 0; v < 256; v++) lut[v] = (v - lo) * scale;
      const src = this.source.data;
      const out = this.offctx.createImageData(this.source.width, this.source.height);
      const dst = out.data;
      for (let i = 0; i < src.length; i += 4) {
        dst[i] = lut[src[i]];
        dst[i + 1] = lut[src[i + 1]];
        dst[i + 2] = lut[src[i + 2]];
        dst[i + 3] = 255;
      }
      this.offctx.putImageData(out, 0, 0);
    }
    fit() {
      const w = this.root.clientWidth;
      const h = this.root.clientHeight;
      const s = Math.min(w / this.off.width, h / this.off.height) * this.zoom;
      const x = (w - this.off.width * s) / 2 + this.panX;
      const y = (h - this.off.height * s) / 2 + this.panY;
      return { s, x, y };
    }
    draw() {
      const dpr = window.devicePixelRatio || 1;
      const w = this.root.clientWidth;
      const h = this.root.clientHeight;
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
      this.canvas.style.width = w + "px";
      this.canvas.style.height = h + "px";
      const ctx = this.ctx;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, w, h);
      if (!this.off) return;
      this.applyWindow();
      const { s, x, y } = this.fit();
      ctx.imageSmoothingEnabled = this.zoom < 3;
      ctx.drawImage(this.off, x, y, this.off.width * s, this.off.height * s);
      if (this.overlay) this.overlay(ctx, (u, v) => [x + u * this.off.width * s, y + v * this.off.height * s], this);
      this.wlLabel.textContent = `W ${Math.round(this.window)}  L ${Math.round(this.center)}  ×${this.zoom.toFixed(1)}`;
    }
    toImage(event) {
      const r = this.canvas.getBoundingClientRect();
      const { s, x, y } = this.fit();
      return [(event.clientX - r.left - x) / (this.off.width * s), (event.clientY - r.top - y) / (this.off.height * s)];
    }
    zoomBy(factor) {
      this.zoom = Math.min(12, Math.max(0.5, this.zoom * factor));
      this.draw();
    }
    bind() {
      const c = this.canvas;
      c.addEventListener("wheel", (e) => {
        e.preventDefault();
        this.zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15);
      }, { passive: false });
      c.addEventListener("contextmenu", (e) => e.preventDefault());
      c.addEventListener("dblclick", () => this.reset());
      c.addEventListener("pointerdown", (e) => {
        if (state.placing && this.root.id === "pane-sag" && this.off) {
          const [, v] = this.toImage(e);
          setMarker(data.levels[state.level], v);
          state.placing = false;
          document.body.classList.remove("placing");
          this.draw();
          return;
        }
        const wl = e.button === 2 || e.shiftKey;
        const start = { x: e.clientX, y: e.clientY, panX: this.panX, panY: this.panY, w: this.window, c: this.center };
        c.setPointerCapture(e.pointerId);
        const move = (m) => {
          const dx = m.clientX - start.x;
          const dy = m.clientY - start.y;
          if (wl) {
            this.window = Math.max(1, start.w + dx);
            this.center = start.c - dy;
          } else {
            this.panX = start.panX + dx;
            this.panY = start.panY + dy;
          }
          this.draw();
        };
        const up = () => {
          c.removeEventListener("pointermove", move);
          c.removeEventListener("pointerup", up);
        };
        c.addEventListener("pointermove", move);
        c.addEventListener("pointerup", up);
      });
    }
  }

  // Level markers on the sagittal image: fractions of the image height. They start on the discs
  // ingest localised (data.disc_markers) and at guessed heights where it did not; a rater can
  // move one with L, which is stored per patient in this browser.
  const markerKey = "fala-moved-markers-" + data.patient; // only the levels a rater moved
  const located = data.disc_markers || {};
  const defaultMarkers = Object.fromEntries(
    data.levels.map((lv, i) => [lv, located[lv] ? located[lv].y : 0.3 + i * 0.11]),
  );
  let moved = {};
  try {
    moved = JSON.parse(localStorage.getItem(markerKey) || "{}") || {};
  } catch (err) {
    moved = {};
  }
  const markers = { ...defaultMarkers, ...moved };
  function setMarker(level, v) {
    markers[level] = Math.min(1, Math.max(0, v));
    moved[level] = markers[level];
    localStorage.setItem(markerKey, JSON.stringify(moved));
  }

  const sagInfo = data.images.find((im) => im.view === "sagittal_t2") || data.images[0];
  const sag = new Pane(document.getElementById("pane-sag"));
  const main = new Pane(document.getElementById("pane-main"));
  sag.overlay = (ctx, toScreen, pane) => {
    const w = pane.root.clientWidth;
    data.levels.forEach((lv, i) => {
      const [, y] = toScreen(0, markers[lv]);
      const active = i === state.level;
      ctx.strokeStyle = active ? "rgba(255, 196, 0, 0.95)" : "rgba(120, 180, 255, 0.45)";
      ctx.lineWidth = active ? 2 : 1;
      ctx.setLineDash(active ? [] : [4, 4]);
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
      if (active) {
        ctx.fillStyle = "rgba(255, 196, 0, 0.12)";
        ctx.fillRect(0, y - 10, w, 20);
      }
      if (located[lv] && !(lv in moved)) {
        // the localised disc centre itself, while the marker still sits on it
        const [cx, cy] = toScreen(located[lv].x, located[lv].y);
        ctx.setLineDash([]);
        ctx.beginPath();
        ctx.arc(cx, cy, active ? 5 : 3.5, 0, 2 * Math.PI);
        ctx.stroke();
      }
      ctx.font = (active ? "bold " : "") + "12px system-ui, sans-serif";
      ctx.fillStyle = active ? "#ffc400" : "rgba(160, 200, 255, 0.8)";
      ctx.fillText(located[lv] ? lv : lv + " (guessed)", 8, y - 4);
    });
    ctx.setLineDash([]);
  };
  if (sagInfo) sag.show(sagInfo);

  const thumbs = document.getElementById("thumbs");
  data.images.forEach((im) => {
    const b = document.createElement("button");
    b.className = "thumb";
    b.type = "button";
    b.dataset.key = im.key;
    b.title = im.title;
    const img = document.createElement("img");
    img.src = im.url;
    img.alt = im.title;
    const cap = document.createElement("span");
    cap.textContent = im.title;
    b.append(img, cap);
    b.addEventListener("click", () => showMain(im));
    thumbs.append(b);
  });
  function showMain(im) {
    main.show(im);
    for (const t of thumbs.children) t.classList.toggle("active", Number(t.dataset.key) === im.key);
  }
  function showLevelImage() {
    const lv = data.levels[state.level];
    const im = data.images.find((x) => x.view === "axial_t2" && x.level === lv);
    if (im && (!main.info || main.info.key !== im.key)) showMain(im);
    sag.draw();
  }

  // ------------------------------------------------------------------ grading forms
  const levelsRoot = document.getElementById("levels");
  const saveState = document.getElementById("save-state");
  const conflict = document.getElementById("conflict");

  function applicable(level, field) {
    if (field !== "herniation") return true;
    return state.gradings[level].grades.disc_state === 3;
  }

  function build() {
    data.levels.forEach((lv, li) => {
      const card = document.createElement("section");
      card.className = "level";
      card.dataset.level = lv;
      const head = document.createElement("header");
      const title = document.createElement("h2");
      title.textContent = lv;
      const status = document.createElement("span");
      status.className = "level-status";
      head.append(title, status);
      head.addEventListener("click", () => select(li, 0));
      card.append(head);
      data.fields.forEach((f, fi) => {
        const row = document.createElement("div");
        row.className = "field";
        row.dataset.field = f.name;
        const name = document.createElement("span");
        name.className = "field-name";
        name.textContent = f.title;
        row.append(name);
        const group = document.createElement("div");
        group.className = "grades";
        group.setAttribute("role", "radiogroup");
        group.setAttribute("aria-label", `${lv} ${f.title}`);
        f.grades.forEach((g) => {
          const b = document.createElement("button");
          b.type = "button";
          b.className = "grade g" + g.value;
          b.dataset.value = g.value;
          b.setAttribute("role", "radio");
          b.innerHTML = "";
          const num = document.createElement("b");
          num.textContent = g.value;
          const lab = document.createElement("span");
          lab.textContent = g.label;
          b.append(num, lab);
          b.addEventListener("click", () => {
            select(li, fi);
            grade(g.value);
          });
          group.append(b);
        });
        row.append(group);
        card.append(row);
      });
      const others = data.others.filter((o) => o.level === lv);
      if (others.length) {
        const box = document.createElement("div");
        box.className = "others";
        for (const o of others) {
          const line = document.createElement("div");
          const short = { disc_state: "DS", herniation: "HT", scs: "SCS", rfs: "RFS", lfs: "LFS" };
          line.textContent = `${o.rater}: ` + FIELDS.map((f) => `${short[f]} ${o.grades[f] ?? "·"}`).join(" · ");
          box.append(line);
        }
        card.append(box);
      }
      levelsRoot.append(card);
    });
  }

  function render() {
    data.levels.forEach((lv, li) => {
      const card = levelsRoot.querySelector(`[data-level="${lv}"]`);
      const g = state.gradings[lv];
      const complete = FIELDS.every((f) => g.grades[f] !== null && g.grades[f] !== undefined);
      card.classList.toggle("active", li === state.level);
      card.classList.toggle("complete", complete);
      card.querySelectorAll(".field").forEach((row, fi) => {
        const f = row.dataset.field;
        const ok = applicable(lv, f);
        row.classList.toggle("na", !ok);
        row.classList.toggle("current", li === state.level && fi === state.field);
        row.querySelectorAll(".grade").forEach((b) => {
          const on = g.grades[f] === Number(b.dataset.value);
          b.classList.toggle("on", on);
          b.setAttribute("aria-checked", on ? "true" : "false");
          b.disabled = !ok;
        });
      });
      const status = card.querySelector(".level-status");
      if (state.failed[lv]) {
        status.textContent = "not saved";
        status.className = "level-status error";
      } else if (state.inflight[lv] || state.pending[lv]) {
        status.textContent = "saving…";
        status.className = "level-status saving";
      } else if (complete) {
        status.textContent = "✓ complete";
        status.className = "level-status done";
      } else {
        const n = FIELDS.filter((f) => g.grades[f] !== null && g.grades[f] !== undefined).length;
        status.textContent = n ? `${n}/5` : "";
        status.className = "level-status";
      }
    });
    const busy = data.levels.some((lv) => state.inflight[lv] || state.pending[lv]);
    const failed = data.levels.some((lv) => state.failed[lv]);
    saveState.className = "save-state " + (failed ? "error" : busy ? "saving" : "saved");
    saveState.textContent = failed ? "Some changes NOT saved" : busy ? "Saving…" : "All changes saved";
  }

  function select(li, fi) {
    const changedLevel = li !== state.level;
    state.level = (li + data.levels.length) % data.levels.length;
    state.field = fi;
    if (changedLevel) showLevelImage();
    render();
    const card = levelsRoot.querySelector(`[data-level="${data.levels[state.level]}"]`);
    card.scrollIntoView({ block: "nearest" });
  }

  function moveField(step) {
    let li = state.level;
    let fi = state.field;
    for (let i = 0; i < FIELDS.length * data.levels.length; i++) {
      fi += step;
      if (fi >= FIELDS.length) {
        fi = 0;
        li += 1;
      } else if (fi < 0) {
        fi = FIELDS.length - 1;
        li -= 1;
      }
      if (li < 0 || li >= data.levels.length) return; // stay at the ends
      if (applicable(data.levels[li], FIELDS[fi])) break;
    }
    select(li, fi);
  }

  function grade(value) {
    const lv = data.levels[state.level];
    const f = FIELDS[state.field];
    if (!applicable(lv, f)) return;
    const g = state.gradings[lv].grades;
    g[f] = value;
    const change = { [f]: value };
    if (f === "disc_state" && value !== 3 && value !== null) {
      g.herniation = 0; // the server does the same: herniation type applies only to herniated discs
    }
    state.pending[lv] = { ...(state.pending[lv] || {}), ...change };
    delete state.failed[lv];
    render();
    flush(lv);
    if (value !== null) moveField(1);
  }

  async function flush(lv) {
    if (state.inflight[lv] || !state.pending[lv]) return;
    const changes = state.pending[lv];
    delete state.pending[lv];
    state.inflight[lv] = true;
    render();
    try {
      const res = await fetch(`/api/patients/${encodeURIComponent(data.patient)}/gradings/${lv}${slotQuery}`, {
        method: "PUT",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": data.csrf },
        body: JSON.stringify({ version: state.gradings[lv].version, changes }),
      });
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        state.gradings[lv].version = body.version;
        // keep local edits made while this save was in flight; take the server's for the rest
        const mine = state.pending[lv] || {};
        state.gradings[lv].grades = { ...body.grades, ...mine };
      } else if (res.status === 409) {
        const cur = body.current;
        state.gradings[lv] = cur
          ? { grades: { ...cur.grades }, version: cur.version }
          : { grades: Object.fromEntries(FIELDS.map((f) => [f, null])), version: 0 };
        delete state.pending[lv];
        state.failed[lv] = body.detail;
        showConflict(body.detail || "Not saved: changed elsewhere.");
      } else if (res.status === 401) {
        state.failed[lv] = "logged out";
        showConflict("Your session ended: nothing more can be saved. Log in again (in another tab) and reload.");
      } else {
        state.failed[lv] = body.detail || `error ${res.status}`;
        showConflict(`Not saved (${lv}): ${state.failed[lv]}`);
      }
    } catch (err) {
      state.failed[lv] = "network";
      state.pending[lv] = { ...changes, ...(state.pending[lv] || {}) };
      showConflict(`Not saved (${lv}): the server cannot be reached. Retrying…`);
      setTimeout(() => {
        delete state.failed[lv];
        flush(lv);
      }, 3000);
    } finally {
      state.inflight[lv] = false;
      render();
      if (state.pending[lv] && !state.failed[lv]) flush(lv);
    }
  }

  function showConflict(message) {
    conflict.textContent = message;
    conflict.hidden = false;
    clearTimeout(showConflict.timer);
    showConflict.timer = setTimeout(() => {
      conflict.hidden = true;
      for (const lv of data.levels) if (state.failed[lv] && state.failed[lv] !== "network") delete state.failed[lv];
      render();
    }, 12000);
  }

  // ------------------------------------------------------------------ model suggestions
  // Advisory only: shown as a badge per level, never written into state.gradings, never sent
  // by flush(); no key or click copies it into a grade.
  async function loadSuggestions() {
    if (!data.suggestions) return;
    let body = {};
    try {
      const res = await fetch(data.suggestions, { credentials: "same-origin" });
      body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.detail || `error ${res.status}`);
    } catch (err) {
      body = { error: String(err.message || err) };
    }
    data.levels.forEach((lv) => {
      const card = levelsRoot.querySelector(`.level[data-level="${lv}"]`);
      if (!card) return;
      const s = body.suggestions && body.suggestions[lv];
      const badge = document.createElement("div");
      badge.className = "suggestion" + (s ? "" : " none");
      badge.dataset.source = "model";
      const tag = document.createElement("span");
      tag.className = "suggestion-tag";
      tag.textContent = "AI suggestion";
      const text = document.createElement("span");
      text.className = "suggestion-text";
      if (s) {
        const pct = Math.round(s.probability * 100);
        text.textContent = `Model: ${s.suggested} ${pct}%`;
        const all = Object.entries(s.probabilities || {}).map(([c, p]) => `${c} ${Math.round(p * 100)}%`).join(", ");
        badge.title = `${data.suggestion_note}\nModel ${s.model} (${s.target}): ${all}`;
      } else {
        text.textContent = body.error ? "Model: unavailable" : "Model: no axial image";
        badge.title = body.error ? `Model suggestions unavailable: ${body.error}` : data.suggestion_note;
      }
      badge.setAttribute("aria-label", `${text.textContent} (AI suggestion, not a grade)`);
      badge.append(tag, text);
      card.querySelector("header").after(badge);
    });
  }

  window.addEventListener("beforeunload", (e) => {
    if (data.levels.some((lv) => state.inflight[lv] || state.pending[lv])) {
      e.preventDefault();
      e.returnValue = "";
    }
  });

  // ------------------------------------------------------------------ keyboard
  const help = document.getElementById("help");
  document.getElementById("help-close").addEventListener("click", () => (help.hidden = true));
  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest("input, select, textarea")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    if (k === "?") {
      help.hidden = !help.hidden;
    } else if (k === "Escape") {
      help.hidden = true;
      state.placing = false;
      document.body.classList.remove("placing");
    } else if (!help.hidden) {
      return;
    } else if (/^[0-3]$/.test(k)) {
      grade(Number(k));
    } else if (k === "Backspace" || k === "Delete") {
      grade(null);
    } else if (k === "ArrowRight" || k === "Tab") {
      moveField(e.shiftKey && k === "Tab" ? -1 : 1);
    } else if (k === "ArrowLeft") {
      moveField(-1);
    } else if (k === "ArrowDown") {
      select(Math.min(data.levels.length - 1, state.level + 1), 0);
    } else if (k === "ArrowUp") {
      select(Math.max(0, state.level - 1), 0);
    } else if (k === "+" || k === "=") {
      main.zoomBy(1.25);
    } else if (k === "-") {
      main.zoomBy(0.8);
    } else if (k === "r" || k === "R") {
      main.reset();
      sag.reset();
    } else if (k === "s" || k === "S") {
      if (sagInfo) showMain(sagInfo);
    } else if (k === "m" || k === "M") {
      const myelo = data.images.filter((x) => x.view === "myelo");
      if (myelo.length) {
        const at = myelo.findIndex((x) => main.info && x.key === main.info.key);
        showMain(myelo[(at + 1) % myelo.length]);
      }
    } else if (k === "l" || k === "L") {
      state.placing = true;
      document.body.classList.add("placing");
    } else if (k === "n" || k === "N") {
      document.getElementById("next-patient").click();
    } else {
      return;
    }
    e.preventDefault();
  });

  build();
  // start at the first level that is not complete
  const firstOpen = data.levels.findIndex((lv) => FIELDS.some((f) => state.gradings[lv].grades[f] === null));
  state.level = Math.max(0, firstOpen);
  state.field = 0;
  if (firstOpen >= 0) {
    const fi = FIELDS.findIndex((f) => state.gradings[data.levels[firstOpen]].grades[f] === null && applicable(data.levels[firstOpen], f));
    state.field = Math.max(0, fi);
  }
  showLevelImage();
  render();
  loadSuggestions();
})();
