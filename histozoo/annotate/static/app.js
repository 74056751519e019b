// histozoo annotate: the page. The server holds (and autosaves) every image's state; the page sends actions with
// the version it shows and draws what comes back. Actions run one after another (a queue), so each carries the
// version the previous one returned. A 409 means another tab changed the image: shown, nothing overwritten.
"use strict";

const $ = (id) => document.getElementById(id);
const S = { name: null, state: null, img: null, ov: null, queue: Promise.resolve() };

function setBusy(b) { document.body.dataset.busy = b ? "1" : "0"; }
function showError(msg) { $("error").textContent = msg || ""; }

async function request(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) {
    const e = new Error(data.error || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

function enqueue(fn) {
  S.seq = (S.seq || 0) + 1;
  S.queue = S.queue.then(async () => {
    setBusy(true);
    try {
      await fn();
    } catch (e) {
      showError(e.message);
      if (e.status === 409) $("reload").hidden = false;
    } finally {
      setBusy(false);
    }
  });
  return S.queue;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error(`could not load ${src}`));
    im.src = src;
  });
}

function describe(st) {
  const lines = [`${st.name}: ${st.width} x ${st.height}, version ${st.version}`,
    `${st.instances} nuclei accepted, ${st.clicks.length} pending click(s), mask ${st.pending} px`];
  if (st.proposals !== null) lines.push(`proposals: ${st.proposals_left} of ${st.proposals} left, showing #${st.proposal}`);
  lines.push(st.unsaved ? "changes autosaved; not yet saved to files" : "saved to files");
  if (st.message) lines.push(st.message);
  return lines.join("\n");
}

async function show(st) {
  S.state = st;
  const q = encodeURIComponent(st.name);
  S.ov = await loadImage(`/api/overlay?name=${q}&v=${st.version}`);
  draw();
  $("status").textContent = describe(st);
  document.body.dataset.version = String(st.version);
  document.body.dataset.overlay = String(st.version);
}

function draw() {
  const c = $("view"), ctx = c.getContext("2d");
  if (!S.img) return;
  if (c.width !== S.img.width || c.height !== S.img.height) { c.width = S.img.width; c.height = S.img.height; }
  ctx.drawImage(S.img, 0, 0);
  if (S.ov) ctx.drawImage(S.ov, 0, 0);
  for (const [y, x, pos] of (S.state ? S.state.clicks : [])) {
    ctx.beginPath();
    ctx.arc(x + 0.5, y + 0.5, 4, 0, 2 * Math.PI);
    ctx.fillStyle = pos ? "#00e000" : "#ff2020";
    ctx.fill();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
}

function open(name) {
  return enqueue(async () => {
    showError("");
    $("reload").hidden = true;
    const q = encodeURIComponent(name);
    const st = await request(`/api/state?name=${q}`);
    S.img = await loadImage(`/api/image?name=${q}`);
    S.name = name;
    await show(st);
  });
}

function act(path, extra) {
  return enqueue(async () => {
    if (!S.state) throw new Error("open an image first");
    showError("");
    const st = await request(path, { name: S.name, version: S.state.version, ...extra });
    await show(st);
    if (path === "/api/save") refreshList();
  });
}

async function refreshList() {
  const data = await request("/api/images");
  const sel = $("images"), keep = sel.value;
  sel.innerHTML = "";
  for (const im of data.images) {
    const o = document.createElement("option");
    o.value = im.name;
    o.textContent = im.saved ? `${im.name} (${im.instances} saved)` : im.name;
    sel.appendChild(o);
  }
  if (keep) sel.value = keep;
  $("models").textContent = `interactive model: ${data.model || "none"}; automatic: ${data.auto_model || "none"}`;
  return data;
}

function pixel(e) {
  const c = $("view"), r = c.getBoundingClientRect();
  return [Math.floor((e.clientY - r.top) * c.height / r.height), Math.floor((e.clientX - r.left) * c.width / r.width)];
}

$("view").addEventListener("contextmenu", (e) => e.preventDefault());
$("view").addEventListener("mousedown", (e) => {
  if (e.button !== 0 && e.button !== 2) return;
  e.preventDefault();
  const [y, x] = pixel(e);
  act("/api/click", { y, x, positive: e.button === 0 && !e.shiftKey, fbrs: $("fbrs").checked });
});
$("images").addEventListener("change", (e) => open(e.target.value));
$("accept").onclick = () => act("/api/accept");
$("undo").onclick = () => act("/api/undo", { fbrs: $("fbrs").checked });
$("clear").onclick = () => act("/api/clear");
$("propose").onclick = () => act("/api/propose");
$("prev").onclick = () => act("/api/proposal", { action: "prev" });
$("next").onclick = () => act("/api/proposal", { action: "next" });
$("take").onclick = () => act("/api/proposal", { action: "accept" });
$("takeall").onclick = () => act("/api/proposal", { action: "accept_all" });
$("save").onclick = () => act("/api/save");
$("reload").onclick = () => S.name && open(S.name);
$("export").onclick = () => enqueue(async () => {
  showError("");
  const r = await request("/api/export", {});
  $("status").textContent = r.message;
});
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "SELECT") return;
  const k = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && k === "s") { e.preventDefault(); act("/api/save"); }
  else if ((e.ctrlKey || e.metaKey) && k === "z") { e.preventDefault(); $("undo").click(); }
  else if (k === "enter") $("accept").click();
  else if (k === "escape") $("clear").click();
  else if (k === "n") $("next").click();
  else if (k === "p") $("prev").click();
  else if (k === "t") $("take").click();
});

// Another tab's changes are noticed without waiting for this page's next action: every 3 s, an idle page compares
// the server's version of its image with its own and, when the server is ahead, says so (nothing is reloaded
// behind the user's back). A server that stopped answering is said too (the work so far is autosaved there).
setInterval(async () => {
  if (!S.state || document.hidden || document.body.dataset.busy === "1") return;
  const seq = S.seq, shown = S.state.version, name = S.name;
  try {
    const st = await request(`/api/state?name=${encodeURIComponent(name)}`);
    if (seq === S.seq && name === S.name && st.version > shown && !$("error").textContent) {
      showError(`${name} was changed in another tab or window (this page shows version ${shown}, the server has ` +
                `version ${st.version}); reload the image to continue`);
      $("reload").hidden = false;
    }
  } catch (e) {
    if (seq === S.seq) showError(`the server does not answer (${e.message}); the work so far is autosaved there`);
  }
}, 3000);

enqueue(async () => {
  const data = await refreshList();
  const first = new URLSearchParams(location.search).get("image") || (data.images[0] || {}).name;
  if (first) { $("images").value = first; await new Promise((r) => setTimeout(r, 0)); }
  return first;
}).then(() => { const n = $("images").value; if (n) open(n); });
