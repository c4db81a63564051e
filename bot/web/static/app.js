// Darkroom on-device page: the person's photo is read, styled and saved in this browser. The
// only request that ever carries a picture is the explicit "send the styled result to my chat".

import { maxSideFor } from "./core.js";

const $ = (id) => document.getElementById(id);
const telegram = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData ? window.Telegram.WebApp : null;
const userLanguage = (telegram && telegram.initDataUnsafe.user && telegram.initDataUnsafe.user.language_code) || navigator.language || "en";
const lang = userLanguage.toLowerCase().startsWith("zh") ? "zh" : "en";
let T = {};  // the page's texts, from handlers/texts.py (served in styles.json)
const params = new URLSearchParams(location.search);

let worker = null, nextId = 1, lastJpeg = null, lastStyle = null;
const pending = new Map();

function setState(state) { document.body.dataset.state = state; }

function ask(message) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, progress: message.onProgress });
    delete message.onProgress;
    worker.postMessage({ id, ...message });
  });
}

function simdSupported() {
  // the smallest module using a v128 instruction (as wasm-feature-detect checks it)
  const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
  try { return typeof WebAssembly === "object" && WebAssembly.validate(bytes); } catch { return false; }
}

function fillTexts() {
  document.documentElement.lang = lang === "zh" ? "zh-Hans" : "en";
  $("promise").textContent = T.promise;
  $("pick-label").textContent = T.pick;
  $("styles-label").textContent = T.styles;
  $("strength-label").textContent = T.strength;
  $("keep-label").textContent = T.keep;
  $("go").textContent = T.go;
  $("save").textContent = T.save;
  $("share").textContent = T.share;
  $("label-note").textContent = T.labelNote;
  $("send-note").textContent = T.sendNote;
  $("send").textContent = T.send;
  $("about-title").textContent = T.aboutTitle;
  $("step").textContent = T.loading;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function renderStyles(catalogue) {
  const box = $("styles");
  catalogue.styles.forEach((style, i) => {
    const label = document.createElement("label");
    label.className = "style";
    const input = document.createElement("input");
    Object.assign(input, { type: "radio", name: "style", value: style.key, checked: i === 0 });
    const name = document.createElement("strong");
    name.textContent = " " + style.name[lang];
    const description = document.createElement("small");
    description.textContent = style.description[lang];
    const licence = document.createElement("small");
    licence.textContent = style.licence;
    label.append(input, name, description, licence);
    box.append(label);
  });
  $("about").textContent = T.about + [...new Set(catalogue.styles.map((s) => s.licence))].join("; ");
}

async function start() {
  const catalogue = await (await fetch("styles.json")).json();
  T = catalogue.texts[lang];
  fillTexts();
  if (telegram) { telegram.ready(); telegram.expand(); }
  if (!simdSupported() || typeof Worker === "undefined" || typeof OffscreenCanvas === "undefined") {
    $("controls").hidden = true;
    $("unsupported").textContent = T.unsupported;
    $("unsupported").hidden = false;
    setState("unsupported");
    return;
  }
  $("progress-box").hidden = false;
  renderStyles(catalogue);
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = ({ data }) => {
    const waiter = pending.get(data.id);
    if (!waiter) return;
    if (data.type === "progress") { waiter.progress && waiter.progress(data.step); return; }
    pending.delete(data.id);
    if (data.type === "error") waiter.reject(new Error(data.reason)); else waiter.resolve(data);
  };
  const cores = navigator.hardwareConcurrency || 1;
  const threads = Number(params.get("threads")) || (self.crossOriginIsolated ? Math.min(4, cores) : 1);
  try {
    const ready = await ask({ type: "init", threads });
    document.body.dataset.threads = String(ready.threads);
    document.body.dataset.loadSeconds = ready.seconds.toFixed(3);
  } catch (error) {
    $("progress-box").hidden = true;
    showError(T[error.message] || T.error);
    setState("error");
    return;
  }
  $("progress-box").hidden = true;
  $("go").disabled = !$("photo").files.length;
  $("photo").addEventListener("change", () => { $("go").disabled = !$("photo").files.length; });
  $("strength").addEventListener("input", () => { $("strength-value").textContent = `${$("strength").value}%`; });
  $("go").addEventListener("click", styleIt);
  $("send").addEventListener("click", sendToChat);
  $("share").addEventListener("click", shareIt);
  $("send-box").hidden = !telegram;
  setState("ready");
}

async function styleIt() {
  const file = $("photo").files[0];
  if (!file) return;
  const styleKey = document.querySelector("input[name=style]:checked").value;
  $("error").hidden = true;
  $("go").disabled = true;
  $("progress-box").hidden = false;
  $("step").textContent = T.decode;
  setState("working");
  const started = performance.now();
  try {
    const result = await ask({
      type: "style",
      blob: file,
      styleKey,
      strength: Number($("strength").value) / 100,
      keepColours: $("keep").checked,
      faceAware: true,
      maxSide: maxSideFor(navigator.deviceMemory),
      onProgress: (step) => { $("step").textContent = T[step] || ""; },
    });
    show(result, styleKey);
    document.body.dataset.seconds = ((performance.now() - started) / 1000).toFixed(3);
    document.body.dataset.networkSeconds = result.networkSeconds.toFixed(3);
    document.body.dataset.faces = JSON.stringify(result.faces);
    setState("done");
  } catch (error) {
    const reason = error.message;
    showError(T[reason] || (reason.includes("decode") || reason.includes("source image") ? T.decodeError : T.error));
    setState("error");
  } finally {
    $("progress-box").hidden = true;
    $("go").disabled = false;
  }
}

function show(result, styleKey) {
  const canvas = $("result");
  canvas.width = result.width;
  canvas.height = result.height;
  canvas.getContext("2d").putImageData(new ImageData(result.pixels, result.width, result.height), 0, 0);
  lastJpeg = new Blob([result.jpeg], { type: "image/jpeg" });
  lastStyle = styleKey;
  const url = URL.createObjectURL(lastJpeg);
  if ($("save").href) URL.revokeObjectURL($("save").href);
  $("save").href = url;
  $("save").download = `darkroom-${styleKey}.jpg`;
  $("result-image").src = url;
  $("result-box").hidden = false;
  const file = new File([lastJpeg], `darkroom-${styleKey}.jpg`, { type: "image/jpeg" });
  $("share").hidden = !(navigator.canShare && navigator.canShare({ files: [file] }));
  $("send-status").textContent = "";
}

async function shareIt() {
  if (!lastJpeg) return;
  const file = new File([lastJpeg], `darkroom-${lastStyle}.jpg`, { type: "image/jpeg" });
  try { await navigator.share({ files: [file] }); } catch { /* the person closed the sheet */ }
}

async function sendToChat() {
  if (!lastJpeg || !telegram) return;
  $("send").disabled = true;
  try {
    const response = await fetch("send", {
      method: "POST",
      headers: { "Content-Type": "image/jpeg", "X-Telegram-Init-Data": telegram.initData },
      body: new Uint8Array(await lastJpeg.arrayBuffer()),  // bytes, so what is sent can be checked
    });
    $("send-status").textContent = response.ok ? T.sent : T.sendFailed;
  } catch {
    $("send-status").textContent = T.sendFailed;
  } finally {
    $("send").disabled = false;
  }
}

start();
