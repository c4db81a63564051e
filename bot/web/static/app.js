// Darkroom on-device page: the person's photo is read, styled and saved in this browser. The
// only request that ever carries a picture is the explicit "send the styled result to my chat".

import { maxSideFor } from "./core.js";

const TEXTS = {
  en: {
    promise: "Styled on your phone — the photo is never sent.",
    pick: "Pick or take a photo",
    styles: "Style",
    strength: "Strength",
    keep: "Keep the photo's colours",
    go: "Style it",
    loading: "Getting ready…",
    decode: "Reading the photo…",
    faces: "Looking for faces (they are styled more gently)…",
    network: "Styling…",
    finish: "Finishing…",
    save: "Save the picture",
    share: "Share…",
    labelNote: "The saved picture says in its metadata that it is AI-styled. None of your photo's own metadata (place, camera, time) is in it.",
    sendNote: "Optional: send the styled picture to this chat. This uploads only the styled result — never your original photo — and the server forgets it once it is delivered.",
    send: "Send the styled picture to the chat",
    sent: "Sent.",
    sendFailed: "It could not be sent. You can still save it.",
    unsupported: "This browser cannot run the styling on your device (it lacks WebAssembly SIMD). Nothing was sent anywhere. You can still use Darkroom by sending your photo to the bot in the chat; then it is styled on the server and forgotten.",
    error: "Something went wrong while styling. Nothing was sent anywhere. Please try another photo.",
    "too-small": "That picture is too small to style. Please try a larger one.",
    "model-checksum": "The style model did not arrive intact, so it was not used. Please reload the page.",
    decodeError: "That file could not be read as a picture. Please try a JPEG, PNG or WebP photo.",
    aboutTitle: "What happens to my photo?",
    about: "Your photo is read and styled inside this page, on your device. It is never uploaded: the page only downloads the style model and its own files from the server. Faces are found on your device too, to style them more gently. Style licences: ",
    faces1: "face found", facesN: "faces found",
  },
  zh: {
    promise: "在你的手机上完成风格化——照片不会被发送。",
    pick: "选择或拍摄一张照片",
    styles: "风格",
    strength: "强度",
    keep: "保留照片原有色彩",
    go: "开始",
    loading: "准备中……",
    decode: "正在读取照片……",
    faces: "正在寻找人脸（人脸处风格更柔和）……",
    network: "正在风格化……",
    finish: "即将完成……",
    save: "保存图片",
    share: "分享……",
    labelNote: "保存的图片在元数据中注明为 AI 风格化作品，不含原照片的任何元数据（地点、相机、时间）。",
    sendNote: "可选：把风格化后的图片发送到本聊天。只会上传风格化结果，绝不上传原照片；送达后服务器即删除。",
    send: "把风格化图片发送到聊天",
    sent: "已发送。",
    sendFailed: "发送失败。你仍然可以保存图片。",
    unsupported: "此浏览器无法在设备上完成风格化（不支持 WebAssembly SIMD）。没有任何内容被发送。你仍可以在聊天中把照片发给机器人，由服务器处理后立即删除。",
    error: "风格化时出错了。没有任何内容被发送。请换一张照片试试。",
    "too-small": "这张图片太小了，请换一张更大的。",
    "model-checksum": "风格模型传输不完整，因此未被使用。请重新加载页面。",
    decodeError: "无法读取这个文件。请使用 JPEG、PNG 或 WebP 照片。",
    aboutTitle: "我的照片会怎样？",
    about: "你的照片在本页面内、你的设备上读取并风格化，从不上传：页面只从服务器下载风格模型和自身文件。人脸检测也在你的设备上进行，以便人脸处风格更柔和。风格许可：",
    faces1: "张人脸", facesN: "张人脸",
  },
};

const $ = (id) => document.getElementById(id);
const telegram = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData ? window.Telegram.WebApp : null;
const userLanguage = (telegram && telegram.initDataUnsafe.user && telegram.initDataUnsafe.user.language_code) || navigator.language || "en";
const lang = userLanguage.toLowerCase().startsWith("zh") ? "zh" : "en";
const T = TEXTS[lang];
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
  const catalogue = await (await fetch("styles.json")).json();
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
