// Darkroom on-device page: the person's photo is read, styled and saved in this browser. The
// only request that ever carries a picture is the explicit "send the styled result to my chat".
// The page is built around the photo: pick it, see it at once, see it small in every style,
// tap one to style the whole photo where you are looking, hold to compare, save or send.

import { checkPicked, imageSize, maxSideFor } from "./core.js";

const $ = (id) => document.getElementById(id);
const telegram = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData ? window.Telegram.WebApp : null;
const userLanguage = (telegram && telegram.initDataUnsafe.user && telegram.initDataUnsafe.user.language_code) || navigator.language || "en";
const lang = userLanguage.toLowerCase().startsWith("zh") ? "zh" : "en";
let T = {};  // the page's texts, from handlers/texts.py (served in styles.json)
const params = new URLSearchParams(location.search);
const TILE_SIDE = 160; // the long side of a style tile, in pixels
const STEPS = ["decode", "faces", "network", "finish"]; // numbered for the progress line
const DIRECT_PREVIEW_PIXELS = 12_000_000; // above this, the preview comes from the worker (memory)
const ESTIMATE_KEY = "darkroom.lastSeconds"; // only a duration: how long the last full style took

let worker = null, nextId = 1, ready = null, catalogue = null;
const pending = new Map();
const page = {
  photo: 0,          // which picked photo this is; answers for an older one are dropped
  previewUrl: "",    // blob: URL of the picked photo (never leaves the page)
  styleKey: "",      // the style shown in the stage, "" while the original is shown
  jpeg: null,        // the styled result as a labelled JPEG Blob
  sent: false,       // this result was sent to the chat (Send is disabled then)
  job: 0,            // the running style job, 0 when none
  jobs: 0,
  restyleTimer: 0,
};

function setState(state) { document.body.dataset.state = state; }
function format(text, values) { return text.replace(/\{(\w+)\}/g, (_, k) => String(values[k])); }

function ask(message, onEvent) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onEvent });
    worker.postMessage({ id, ...message });
  });
}

function simdSupported() {
  // the smallest module using a v128 instruction (as wasm-feature-detect checks it)
  const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
  try { return typeof WebAssembly === "object" && WebAssembly.validate(bytes); } catch { return false; }
}

function haptic(kind) {
  const feedback = telegram && telegram.HapticFeedback;
  if (!feedback) return;
  if (kind === "select") feedback.selectionChanged(); else feedback.notificationOccurred(kind);
}

function fillTexts() {
  document.documentElement.lang = lang === "zh" ? "zh-Hans" : "en";
  const texts = {
    promise: T.promise, "pick-label": T.pick, "change-label": T.change, "styles-label": T.styles, "tiles-hint": T.tilesHint,
    "strength-label": T.strength, "keep-label": T.keep, "gentle-label": T.gentle, cancel: T.cancel, compare: T.compare,
    save: T.save, share: T.share, send: T.send, "label-note": T.labelNote, "send-note": T.sendNote, "about-title": T.aboutTitle,
    about: T.about, step: T.loading, evidence: T.evidence,
  };
  for (const [id, text] of Object.entries(texts)) $(id).textContent = text;
  $("compare").title = T.compareHint;
  $("compare").setAttribute("aria-label", `${T.compare}: ${T.compareHint}`);
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function renderTiles() {
  const box = $("tiles");
  for (const style of catalogue.styles) {
    const tile = document.createElement("button");
    Object.assign(tile, { type: "button", className: "tile", disabled: true, title: style.description[lang] });
    tile.dataset.style = style.key;
    tile.setAttribute("aria-pressed", "false");
    const canvas = document.createElement("canvas");
    Object.assign(canvas, { width: TILE_SIDE, height: TILE_SIDE });
    canvas.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.textContent = style.name[lang];
    tile.append(canvas, name);
    tile.addEventListener("click", () => styleWith(style.key));
    box.append(tile);
  }
  // one line for all styles' licences, under "What happens to my photo?"
  $("licences").textContent = T.licences + [...new Set(catalogue.styles.map((s) => s.licence))].join("; ");
  // and what runs here, by SHA-256: the page, the runtime and the models
  $("hashes-title").textContent = T.hashes;
  const shown = Object.entries(catalogue.files || {}).filter(([name]) => /(\.html|\.js|\.mjs|\.wasm|\.onnx\?.*)$/.test(name));
  for (const [name, digest] of shown) {
    const item = document.createElement("li");
    item.textContent = `${name.split("?")[0]}: ${digest}`;
    $("hashes").append(item);
  }
}

function resetTiles() {
  for (const tile of $("tiles").children) {
    tile.disabled = true;
    tile.setAttribute("aria-pressed", "false");
    const canvas = tile.querySelector("canvas");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    delete tile.dataset.ready;
  }
  delete document.body.dataset.tiles;
}

function drawTile({ key, pixels, width, height }) {
  const tile = $("tiles").querySelector(`[data-style="${key}"]`);
  const canvas = tile.querySelector("canvas");
  Object.assign(canvas, { width, height });
  canvas.getContext("2d").putImageData(new ImageData(pixels, width, height), 0, 0);
  tile.dataset.ready = "1";
  tile.disabled = false;
}

// The old photo's result, tiles and messages go as soon as another photo is picked.
function clearResult() {
  page.styleKey = "";
  page.jpeg = null;
  page.sent = false;
  if ($("save").href.startsWith("blob:")) URL.revokeObjectURL($("save").href);
  $("save").href = "#";
  $("result").hidden = true;
  $("preview").hidden = false;
  $("badge").textContent = "";
  $("bar").hidden = true;
  $("send-status").textContent = "";
  $("faces-line").textContent = "";
  showError("");
  resetTiles();
  if (telegram) { telegram.MainButton.hide(); telegram.BackButton.hide(); }
}

function showPicker() {
  $("view").hidden = true;
  $("pick").hidden = false;
  $("change").hidden = true;
  if (page.previewUrl.startsWith("blob:")) URL.revokeObjectURL(page.previewUrl);
  page.previewUrl = "";
  $("preview").removeAttribute("src");
}

async function picked() {
  const file = $("photo").files[0];
  if (!file) return;
  const mine = ++page.photo;
  const started = performance.now();
  document.body.dataset.photo = "reading"; // "read" or "refused" once it is known
  cancelStyle(false);
  clearResult();
  if (worker) worker.postMessage({ id: 0, type: "release" }); // the previous photo is let go at once
  // Checked from its first bytes before anything is decoded: the answer sits next to the picker.
  const size = imageSize(new Uint8Array(await file.slice(0, 262144).arrayBuffer()));
  if (mine !== page.photo) return;
  const refusal = file.size === 0 ? "decodeError" : checkPicked(size);
  if (refusal) {
    showPicker();
    showError(T[refusal]);
    document.body.dataset.photo = "refused";
    $("photo").value = "";
    if (document.body.dataset.state !== "loading") setState("error");
    haptic("error");
    return;
  }
  // Shown from the file at once; a big photo (which an <img> would decode in full, 190 MB for
  // 48 MP) is shown from the worker's working-size copy once it is read.
  const direct = size.width * size.height <= DIRECT_PREVIEW_PIXELS;
  if (page.previewUrl.startsWith("blob:")) URL.revokeObjectURL(page.previewUrl);
  page.previewUrl = direct ? URL.createObjectURL(file) : "pending";
  if (direct) $("preview").src = page.previewUrl; else $("preview").removeAttribute("src");
  $("pick").hidden = true;
  $("view").hidden = false;
  $("change").hidden = false;
  const shown = () => $("preview").decode().then(() => {
    if (mine === page.photo) document.body.dataset.previewSeconds = ((performance.now() - started) / 1000).toFixed(3);
  }, () => {});
  if (direct) shown();
  if (!(await ready) || mine !== page.photo) return;
  setState("working");
  showProgress(0);
  try {
    const loaded = await ask({ type: "load", blob: file, maxSide: maxSideFor(navigator.deviceMemory), wantPreview: !direct },
      (event) => { if (event.type === "progress") showProgress(STEPS.indexOf(event.step)); });
    if (mine !== page.photo) return;
    if (loaded.preview) {
      page.previewUrl = URL.createObjectURL(loaded.preview);
      $("preview").src = page.previewUrl;
      shown();
    }
    page.faces = loaded.faces;
    document.body.dataset.faces = JSON.stringify(loaded.faces);
    showFaces();
  } catch (error) {
    if (mine !== page.photo || error.message === "cancelled") return;
    hideProgress();
    showPicker();
    showError(T[error.message] || T.decodeError);
    document.body.dataset.photo = "refused";
    $("photo").value = "";
    setState("error");
    haptic("error");
    return;
  }
  hideProgress();
  setState("ready");
  document.body.dataset.photo = "read";
  ask({ type: "tiles", side: TILE_SIDE }, (event) => { if (event.type === "tile" && mine === page.photo) drawTile(event); })
    .then(() => {
      if (mine !== page.photo) return;
      document.body.dataset.tiles = "done";
      document.body.dataset.tilesSeconds = ((performance.now() - started) / 1000).toFixed(3);
    }, () => {});
}

function showFaces() {
  const n = (page.faces || []).length;
  if (!$("gentle").checked) $("faces-line").textContent = n ? T.facesOff : T.faces0;
  else $("faces-line").textContent = n === 0 ? T.faces0 : n === 1 ? T.faces1 : format(T.facesN, { n });
}

function showProgress(index) {
  const box = $("progress-box");
  box.hidden = false;
  const step = STEPS[Math.max(0, index)];
  $("step").textContent = format(T.stepOf, { n: Math.max(0, index) + 1, total: STEPS.length, step: T[step] });
  $("progress").value = Math.max(0, index) + 0.5;
  const last = Number(localStorage.getItem(ESTIMATE_KEY));
  $("estimate").textContent = index >= 2 && last > 0 ? format(T.estimate, { seconds: Math.max(1, Math.round(last)) }) : "";
  $("cancel").hidden = index < 2; // reading and face finding take a moment; styling can be stopped
}

function hideProgress() { $("progress-box").hidden = true; }

async function styleWith(styleKey) {
  if (document.body.dataset.state === "working" || !page.previewUrl) return;
  haptic("select");
  for (const tile of $("tiles").children) tile.setAttribute("aria-pressed", String(tile.dataset.style === styleKey));
  const job = page.job = ++page.jobs;
  const before = document.body.dataset.state;
  setState("working");
  showError("");
  showProgress(2);
  const started = performance.now();
  try {
    const result = await ask({
      type: "style", styleKey,
      strength: Number($("strength").value) / 100,
      keepColours: $("keep").checked,
      faceAware: $("gentle").checked,
    }, (event) => { if (event.type === "progress" && page.job === job) showProgress(STEPS.indexOf(event.step)); });
    if (page.job !== job) return;
    show(result, styleKey);
    const seconds = (performance.now() - started) / 1000;
    localStorage.setItem(ESTIMATE_KEY, seconds.toFixed(2));
    document.body.dataset.seconds = seconds.toFixed(3);
    document.body.dataset.networkSeconds = result.networkSeconds.toFixed(3);
    setState("done");
    haptic("success");
  } catch (error) {
    if (page.job !== job) return;
    const reason = error.message;
    if (reason !== "cancelled") { showError(T[reason] || T.error); haptic("error"); }
    setState(before === "done" ? "done" : "ready");
  } finally {
    if (page.job === job) { page.job = 0; hideProgress(); }
  }
}

// Cancel: the page is free at once; the worker drops the job at its next step.
function cancelStyle(say = true) {
  if (!page.job) return;
  page.job = 0;
  worker.postMessage({ id: 0, type: "cancel" });
  hideProgress();
  for (const tile of $("tiles").children) tile.setAttribute("aria-pressed", String(tile.dataset.style === page.styleKey));
  setState(page.styleKey ? "done" : "ready");
  if (say) showError(T.cancelled);
}

function show(result, styleKey) {
  const canvas = $("result");
  canvas.width = result.width;
  canvas.height = result.height;
  canvas.getContext("2d").putImageData(new ImageData(result.pixels, result.width, result.height), 0, 0);
  canvas.hidden = false;
  $("preview").hidden = true;
  page.jpeg = new Blob([result.jpeg], { type: "image/jpeg" });
  page.styleKey = styleKey;
  page.sent = false;
  document.body.dataset.results = String(Number(document.body.dataset.results || 0) + 1);
  if ($("save").href.startsWith("blob:")) URL.revokeObjectURL($("save").href);
  $("save").href = URL.createObjectURL(page.jpeg);
  $("save").download = `darkroom-${styleKey}.jpg`;
  $("badge").textContent = catalogue.styles.find((s) => s.key === styleKey).name[lang];
  const file = new File([page.jpeg], `darkroom-${styleKey}.jpg`, { type: "image/jpeg" });
  $("share").hidden = !(navigator.canShare && navigator.canShare({ files: [file] }));
  $("send").hidden = !telegram;
  $("send").disabled = false;
  $("send-status").textContent = "";
  $("bar").hidden = false;
  if (telegram) {
    telegram.MainButton.setText(T.send);
    telegram.MainButton.enable();
    telegram.MainButton.show();
    telegram.BackButton.show();
  }
}

// Before/after: the original shows while the compare button (or the picture) is held.
function holdOriginal(on) {
  if (!page.styleKey) return;
  $("preview").hidden = !on;
  $("result").hidden = on;
  $("badge").textContent = on ? T.original : catalogue.styles.find((s) => s.key === page.styleKey).name[lang];
  document.body.dataset.comparing = on ? "1" : "";
}

function backToOriginal() {
  if (!page.styleKey) return;
  clearResultOnly();
}

function clearResultOnly() {
  page.styleKey = "";
  page.jpeg = null;
  $("result").hidden = true;
  $("preview").hidden = false;
  $("badge").textContent = "";
  $("bar").hidden = true;
  for (const tile of $("tiles").children) tile.setAttribute("aria-pressed", "false");
  if (telegram) { telegram.MainButton.hide(); telegram.BackButton.hide(); }
  setState("ready");
}

function restyleSoon() {
  showFaces();
  if (!page.styleKey) return;
  clearTimeout(page.restyleTimer);
  page.restyleTimer = setTimeout(() => { if (page.styleKey && !page.job) styleWith(page.styleKey); }, 250);
}

async function shareIt() {
  if (!page.jpeg) return;
  const file = new File([page.jpeg], `darkroom-${page.styleKey}.jpg`, { type: "image/jpeg" });
  try { await navigator.share({ files: [file] }); } catch { /* the person closed the sheet */ }
}

const SEND_ANSWERS = { 403: "sendStale", 409: "sendConsent", 429: "sendLimit" };

async function sendToChat() {
  if (!page.jpeg || !telegram || page.sent) return;
  const jpeg = page.jpeg;
  $("send").disabled = true;
  telegram.MainButton.disable();
  $("send-status").textContent = T.sending;
  let sent = false;
  try {
    const body = new Uint8Array(await jpeg.arrayBuffer()); // bytes, so what is sent can be checked
    const response = await fetch("send", {
      method: "POST",
      headers: { "Content-Type": "image/jpeg", "X-Telegram-Init-Data": telegram.initData },
      body,
    });
    sent = response.ok;
    $("send-status").textContent = sent ? T.sent : T[SEND_ANSWERS[response.status]] || T.sendFailed;
    if (sent) $("evidence").textContent = format(T.evidenceSent, { kb: Math.round(body.length / 1024) });
  } catch {
    $("send-status").textContent = T.sendFailed;
  }
  if (jpeg !== page.jpeg) return; // a new result came meanwhile: its Send is its own
  page.sent = sent;
  $("send").disabled = sent; // once sent, not again; after a failure, try again
  if (sent) telegram.MainButton.hide(); else telegram.MainButton.enable();
  haptic(sent ? "success" : "error");
}

function wire() {
  $("photo").addEventListener("change", picked);
  $("strength").addEventListener("input", () => { $("strength-value").textContent = `${$("strength").value}%`; });
  $("strength").addEventListener("change", restyleSoon);
  $("keep").addEventListener("change", restyleSoon);
  $("gentle").addEventListener("change", restyleSoon);
  $("cancel").addEventListener("click", () => cancelStyle(true));
  $("send").addEventListener("click", sendToChat);
  $("share").addEventListener("click", shareIt);
  for (const target of [$("compare"), $("view")]) {
    target.addEventListener("pointerdown", (e) => { if (e.button === 0) holdOriginal(true); });
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) target.addEventListener(end, () => holdOriginal(false));
  }
  $("compare").addEventListener("keydown", (e) => { if (e.key === " " || e.key === "Enter") { e.preventDefault(); holdOriginal(true); } });
  $("compare").addEventListener("keyup", () => holdOriginal(false));
  $("compare").addEventListener("contextmenu", (e) => e.preventDefault()); // a long press is the point here
  addEventListener("pagehide", () => { if (worker) worker.postMessage({ id: 0, type: "release" }); });
  if (telegram) {
    telegram.MainButton.onClick(sendToChat);
    telegram.BackButton.onClick(backToOriginal);
  }
}

function startWorker() {
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = ({ data }) => {
    const waiter = pending.get(data.id);
    if (!waiter) return;
    if (data.type === "progress" || data.type === "tile") { waiter.onEvent && waiter.onEvent(data); return; }
    pending.delete(data.id);
    if (data.type === "error") waiter.reject(new Error(data.reason)); else waiter.resolve(data);
  };
  const cores = navigator.hardwareConcurrency || 1;
  const threads = Number(params.get("threads")) || (self.crossOriginIsolated ? Math.min(4, cores) : 1);
  return ask({ type: "init", threads });
}

async function start() {
  catalogue = await (await fetch("styles.json")).json();
  T = catalogue.texts[lang];
  fillTexts();
  $("send-note").hidden = !telegram;
  if (telegram) { telegram.ready(); telegram.expand(); }
  if (!simdSupported() || typeof Worker === "undefined" || typeof OffscreenCanvas === "undefined") {
    $("controls").hidden = true;
    $("unsupported").textContent = T.unsupported;
    $("unsupported").hidden = false;
    document.body.dataset.texts = "1";
    setState("unsupported");
    return;
  }
  renderTiles();
  document.body.dataset.texts = "1";
  wire();
  // The photo can be picked (and shown) while the model is still loading.
  ready = startWorker().then((answer) => {
    document.body.dataset.threads = String(answer.threads);
    document.body.dataset.loadSeconds = answer.seconds.toFixed(3);
    if (document.body.dataset.state === "loading") setState("ready");
    return true;
  }, (error) => {
    showError(T[error.message] || T.error);
    setState("error");
    return false;
  });
  if ($("photo").files.length) picked(); // a photo picked before the script ran
  // Keeps the page, runtime and models on this device, for reloading offline (sw.js). After the
  // model has loaded, so that the service worker takes it from the browser's cache, not again
  // from the network.
  ready.then((loaded) => {
    if (loaded && "serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});
  });
}

start();
