// Live camera page: webcam frames -> POST /api/v1/identify -> boxes and names drawn over the video.
// Two frames are in flight at once so the upload of one overlaps the server's work on the other;
// each answer is drawn only if it is newer than the one on screen. Unknown faces go to the review at
// most once a second (not once a frame); a "wrong" button beside each name corrects the latest match.
"use strict";
(function () {
  const WIDTH = 640, HEIGHT = 360, IN_FLIGHT = 2, QUALITY = 0.8, UNKNOWNS_EVERY_MS = 1000;
  const csrf = window.FACEPRINT.csrf;
  const video = document.getElementById("video");
  const overlay = document.getElementById("overlay");
  const ctx = overlay.getContext("2d");
  const stats = document.getElementById("stats");
  const names = document.getElementById("names");
  const grab = document.createElement("canvas");
  grab.width = WIDTH; grab.height = HEIGHT;
  const grabCtx = grab.getContext("2d");
  let sent = 0, shown = -1, busy = 0, running = true, unknownsAt = 0, namesKey = null;
  let current = {id: null, faces: []};  // the result on screen, for "wrong match"
  const updates = [], delays = [];
  // For tests and benchmarks: updates per second and capture-to-draw delay over the last 5 s.
  window.faceprintLive = {updates: 0, fps: 0, delayMs: 0, lastNames: [], frames: 0};

  function frameBlob() {
    grabCtx.drawImage(video, 0, 0, WIDTH, HEIGHT);
    return new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", QUALITY));
  }

  function draw(faces) {
    overlay.width = WIDTH; overlay.height = HEIGHT;
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    ctx.lineWidth = 3; ctx.font = "600 16px system-ui, sans-serif"; ctx.textBaseline = "bottom";
    for (const f of faces) {
      const [x1, y1, x2, y2] = f.box;
      const colour = f.known ? "#22c55e" : "#f59e0b";
      ctx.strokeStyle = colour; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = f.known ? `${f.name} ${Math.round(100 * f.confidence)}%` : "unknown";
      const w = ctx.measureText(label).width + 10;
      const ty = Math.max(y1, 22);
      ctx.fillStyle = colour; ctx.fillRect(x1 - 1.5, ty - 22, w, 22);
      ctx.fillStyle = "#0b1020"; ctx.fillText(label, x1 + 4, ty - 3);
    }
    // The list is rebuilt only when the names change, so its buttons stay put under the pointer.
    const key = faces.map((f) => (f.known ? f.name : "?")).join("\n");
    if (key === namesKey) return;
    namesKey = key;
    names.replaceChildren(...(faces.length ? faces : [{name: "nobody in view", none: true}]).map((f) => {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.textContent = f.none ? f.name : (f.known ? f.name : "unknown");  // textContent: never HTML
      li.className = f.none ? "muted" : (f.known ? "known" : "unknown");
      li.append(label);
      if (f.known) {
        const wrong = document.createElement("button");
        wrong.className = "warn small";
        wrong.dataset.name = f.name;
        wrong.title = `This is not ${f.name}`;
        wrong.textContent = "✗ Wrong";
        li.append(wrong);
      }
      return li;
    }));
  }

  names.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-name]");
    if (!button) return;
    const name = button.dataset.name, note = document.getElementById("names-note");
    const face = current.faces.findIndex((f) => f.known && f.name === name);
    if (face < 0) return;
    button.disabled = true;
    const response = await fetch("/api/v1/corrections", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({result_id: current.id, face}),
    });
    const data = await response.json();
    note.textContent = response.ok
      ? `Noted: this face, and faces like it, will no longer be named ${data.rejected}.`
      : data.error.message;
    namesKey = null;  // redraw the list with the next answer
  });

  function report(now, delay) {
    updates.push(now); delays.push(delay);
    while (updates.length && updates[0] < now - 5000) { updates.shift(); delays.shift(); }
    const span = Math.max(1, now - updates[0]) / 1000;
    const fps = updates.length > 1 ? (updates.length - 1) / span : 0;
    const sorted = [...delays].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] || 0;
    Object.assign(window.faceprintLive, {fps, delayMs: median, updates: window.faceprintLive.updates + 1});
    stats.textContent = `${fps.toFixed(1)} updates/s · ${Math.round(median)} ms delay · 640×360`;
  }

  async function pump() {
    while (running && busy < IN_FLIGHT && video.readyState >= 2) {
      busy++;
      const index = sent++;
      const t0 = performance.now();
      (async () => {
        try {
          const blob = await frameBlob();
          const now = performance.now(), unknowns = now - unknownsAt >= UNKNOWNS_EVERY_MS;
          if (unknowns) unknownsAt = now;
          const response = await fetch(`/api/v1/identify?top_k=1&mode=video&unknowns=${unknowns}`, {
            method: "POST", body: blob, credentials: "same-origin",
            headers: {"Content-Type": "image/jpeg", "X-CSRF-Token": csrf},
          });
          if (response.status === 401) { location.href = "/login?next=/live"; return; }
          const data = await response.json();
          if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
          window.faceprintLive.frames++;
          if (index > shown) {
            shown = index;
            current = {id: data.result_id, faces: data.faces};
            draw(data.faces);
            window.faceprintLive.lastNames = data.faces.map((f) => f.name);
            report(performance.now(), performance.now() - t0);
          }
        } catch (err) {
          stats.textContent = `error: ${err.message}`;
          await new Promise((r) => setTimeout(r, 1000));
        } finally {
          busy--;
          pump();
        }
      })();
    }
  }

  async function start() {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(
        {video: {width: {ideal: WIDTH}, height: {ideal: HEIGHT}}, audio: false});
      video.srcObject = stream;
      video.addEventListener("loadeddata", pump);
      video.addEventListener("playing", pump);
    } catch (err) {
      const box = document.getElementById("camera-error");
      box.hidden = false;
      box.textContent = `No camera: ${err.message}. Allow camera access for this page, or use Identify with a photo.`;
    }
  }

  const enrol = document.getElementById("enrol");
  if (enrol) {
    enrol.addEventListener("submit", async (event) => {
      event.preventDefault();
      const note = document.getElementById("enrol-note");
      const name = document.getElementById("enrol-name").value.trim();
      if (!name) return;
      note.textContent = "enrolling…";
      const form = new FormData();
      form.append("name", name);
      form.append("image", await frameBlob(), "camera.jpg");
      const response = await fetch("/api/v1/enroll", {
        method: "POST", body: form, credentials: "same-origin", headers: {"X-CSRF-Token": csrf},
      });
      const data = await response.json();
      if (!response.ok) note.textContent = data.error.message;
      else if (data.status === "enrolled") note.textContent = `Enrolled ${name}.`;
      else note.textContent = `${data.status}: ${data.reason}`;
    });
  }
  document.addEventListener("visibilitychange", () => {
    running = !document.hidden;
    if (running) pump();
  });
  start();
})();
