// The page's worker: loads the pinned runtime and the verified model once, then styles pictures
// off the page's thread. The picture stays in this browser: nothing here sends it anywhere.

import * as ort from "./vendor/ort.wasm.min.mjs";
import {
  blend, checkPicked, contentId, fitSize, imageSize, keepColours, labelJpeg, MAX_PIXELS, orientationTransform, orientedSize,
  phaseInput, phaseOutput, readJpegInfo, sha256Hex, unpackModel, xmpPacket,
} from "./core.js";
import { detectFaces, FULL_RANGE, SHORT_RANGE } from "./blazeface.js";

let catalogue = null, session = null;
const faceSessions = new Map(); // BlazeFace spec -> (a promise of) its onnxruntime-web session

async function verifiedBytes(model) {
  const response = await fetch(model.url);
  if (!response.ok) throw new Error("model-missing");
  const bytes = new Uint8Array(await response.arrayBuffer());
  // The server checked this file against the catalogue and packed it smaller (bot/web/packing.py);
  // check what arrived, then the ONNX file rebuilt from it, before onnxruntime-web sees it.
  if ((await sha256Hex(bytes)) !== model.sha256) throw new Error("model-checksum");
  let graph;
  try { graph = unpackModel(bytes); } catch { throw new Error("model-checksum"); }
  if ((await sha256Hex(graph)) !== model.graph_sha256) throw new Error("model-checksum");
  return graph;
}

async function init(threads) {
  const started = performance.now();
  catalogue = await (await fetch("styles.json")).json();
  ort.env.wasm.wasmPaths = new URL("vendor/", self.location.href).href;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  const [model, shortRange, fullRange] = await Promise.all([
    verifiedBytes(catalogue.models["multistyle26-phase.onnx"]),
    verifiedBytes(catalogue.models["face_short_range.onnx"]),
    verifiedBytes(catalogue.models["face_full_range.onnx"]),
  ]);
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  // Every model has arrived and been checked. The page is ready once the style network and
  // the selfie face model are; the group face model's session is built right after, and the
  // first face detection waits for it if it comes sooner (it never runs without it).
  session = await ort.InferenceSession.create(model, options);
  faceSessions.set(SHORT_RANGE, await ort.InferenceSession.create(shortRange, options));
  const full = ort.InferenceSession.create(fullRange, options);
  full.catch(() => {}); // a failure surfaces where the session is awaited (runFaces)
  faceSessions.set(FULL_RANGE, full);
  return { threads: ort.env.wasm.numThreads, seconds: (performance.now() - started) / 1000 };
}

// One BlazeFace model on one input tensor (blazeface.js decides which and decodes the outputs).
async function runFaces(spec, input) {
  const faces = await faceSessions.get(spec);
  const tensor = new ort.Tensor("float32", input.data, input.dims);
  const out = await faces.run({ [faces.inputNames[0]]: tensor });
  const regressors = out[faces.outputNames[0]], classificators = out[faces.outputNames[1]];
  const result = { regressors: regressors.data.slice(), classificators: classificators.data.slice() };
  tensor.dispose?.(); regressors.dispose?.(); classificators.dispose?.();
  return result;
}

// One network run at a time: the tiles queue one by one, so a tapped style runs after at most
// the tile being made, not after all of them.
let queue = Promise.resolve();
function exclusive(task) {
  const run = queue.then(task, task);
  queue = run.catch(() => {});
  return run;
}

let picture = null; // the picked photo at its working size, kept for restyling until released
// Jobs stop at their next step once they are stale: a new photo (or its release) makes every
// job on the old one stale; Cancel, or a newer style, makes the running style job stale.
let photoGeneration = 0, styleGeneration = 0;

function release() {
  if (picture) picture.rgba.fill(0);
  picture = null;
}

async function decode(blob, maxSide) {
  // createImageBitmap applies EXIF orientation ("from-image"). An older webview that ignores a
  // quarter turn (what phones write) is caught by comparing with the JPEG's own size and tag,
  // and the picture is turned here instead.
  const head = new Uint8Array(await blob.slice(0, 262144).arrayBuffer());
  const size = imageSize(head);
  if (size && checkPicked(size)) throw new Error(checkPicked(size));
  const info = readJpegInfo(head);
  // Memory guard: a big picture is decoded straight to its working size, never at full size
  // (a 48 MP photo is 190 MB decoded, about 7 MB at 1280 px).
  let options = { imageOrientation: "from-image" };
  if (size && Math.max(size.width, size.height) > maxSide) {
    const upright = orientedSize(size.width, size.height, info.orientation);
    const fitted = fitSize(upright.width, upright.height, maxSide);
    options = { ...options, resizeWidth: fitted.width, resizeHeight: fitted.height, resizeQuality: "high" };
  }
  const bitmap = await createImageBitmap(blob, options);
  if (!options.resizeWidth && bitmap.width * bitmap.height > MAX_PIXELS) { bitmap.close(); throw new Error("too-large"); }
  const turnHere = !options.resizeWidth && info.orientation > 1 && info.width === bitmap.width && info.height === bitmap.height &&
    (info.orientation >= 5 ? info.width !== info.height : false);
  const upright = turnHere ? orientedSize(bitmap.width, bitmap.height, info.orientation) : { width: bitmap.width, height: bitmap.height };
  const fitted = fitSize(upright.width, upright.height, maxSide);
  const canvas = new OffscreenCanvas(fitted.width, fitted.height);
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.imageSmoothingQuality = "high";
  if (turnHere) {
    g.scale(fitted.width / upright.width, fitted.height / upright.height);
    g.transform(...orientationTransform(info.orientation, bitmap.width, bitmap.height));
    g.drawImage(bitmap, 0, 0);
  } else {
    g.drawImage(bitmap, 0, 0, fitted.width, fitted.height);
  }
  bitmap.close();
  return { rgba: g.getImageData(0, 0, fitted.width, fitted.height).data, width: fitted.width, height: fitted.height };
}

// A new photo: decoded, checked and its faces found once; every style then starts from here.
async function load({ blob, maxSide, wantPreview }, progress) {
  release();
  const mine = ++photoGeneration;
  progress("decode");
  const decoded = await decode(blob, maxSide);
  if (Math.min(decoded.width, decoded.height) < 32) throw new Error("too-small");
  progress("faces");
  const faces = (await exclusive(() => detectFaces(decoded.rgba, decoded.width, decoded.height, runFaces)))
    .map(({ x, y, width: w, height: h }) => ({ x, y, width: w, height: h }));
  if (mine !== photoGeneration) { decoded.rgba.fill(0); throw new Error("cancelled"); }
  picture = { ...decoded, faces };
  // A big photo is not shown from its file (the browser would decode all of it for an <img>):
  // the page gets this working-size copy instead.
  let preview = null;
  if (wantPreview) {
    const canvas = new OffscreenCanvas(decoded.width, decoded.height);
    canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(decoded.rgba), decoded.width, decoded.height), 0, 0);
    preview = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.92 });
  }
  return { width: decoded.width, height: decoded.height, faces, preview };
}

async function runStyle(rgba, width, height, style) {
  const input = phaseInput(rgba, width, height);
  const feeds = {
    image: new ort.Tensor("float32", input.data, input.dims),
    style_weights: new ort.Tensor("float32", Float32Array.from(style.weights), [26]),
  };
  const output = await session.run(feeds);
  feeds.image.dispose?.();
  const out = output[session.outputNames[0]];
  const styled = phaseOutput(out.data, input.h4, input.w4, width, height);
  out.dispose?.();
  return styled;
}

// The photo small (long side `side`), in every style, each posted as soon as it is made.
async function tiles({ side }, post) {
  const mine = photoGeneration;
  if (!picture) throw new Error("no-photo");
  const size = fitSize(picture.width, picture.height, side);
  const small = new OffscreenCanvas(size.width, size.height);
  const g = small.getContext("2d", { willReadFrequently: true });
  g.imageSmoothingQuality = "high";
  const bitmap = await pictureBitmap();
  g.drawImage(bitmap, 0, 0, size.width, size.height);
  bitmap.close();
  const rgba = g.getImageData(0, 0, size.width, size.height).data;
  const scale = size.width / picture.width;
  const faces = picture.faces.map((f) => ({ x: f.x * scale, y: f.y * scale, width: f.width * scale, height: f.height * scale }));
  for (const style of catalogue.styles) {
    if (mine !== photoGeneration) break;
    const pixels = await exclusive(async () => {
      if (mine !== photoGeneration) return null;
      const styled = await runStyle(rgba, size.width, size.height, style);
      return blend(rgba, styled, size.width, size.height, 1, faces, style.face_strength);
    });
    if (pixels) post({ type: "tile", key: style.key, pixels, width: size.width, height: size.height }, [pixels.buffer]);
  }
  rgba.fill(0);
  return { made: mine === photoGeneration };
}

async function pictureBitmap() {
  return createImageBitmap(new ImageData(new Uint8ClampedArray(picture.rgba), picture.width, picture.height));
}

async function style({ styleKey, strength, keepColours: keep, faceAware }, progress) {
  const style = catalogue.styles.find((s) => s.key === styleKey);
  if (!style) throw new Error("unknown-style");
  if (!picture) throw new Error("no-photo");
  const mine = [photoGeneration, ++styleGeneration];
  const stale = () => mine[0] !== photoGeneration || mine[1] !== styleGeneration;
  const { rgba, width, height } = picture;
  const faces = faceAware ? picture.faces : [];
  progress("network");
  const { styled: raw, networkSeconds } = await exclusive(async () => {
    if (stale()) throw new Error("cancelled");
    const started = performance.now();
    const styled = await runStyle(rgba, width, height, style);
    return { styled, networkSeconds: (performance.now() - started) / 1000 };
  });
  if (stale()) throw new Error("cancelled");
  progress("finish");
  const styled = keep ? keepColours(raw, rgba, width, height) : raw;
  const result = blend(rgba, styled, width, height, strength, faces, style.face_strength);
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").putImageData(new ImageData(result, width, height), 0, 0);
  const jpeg = new Uint8Array(await (await canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 })).arrayBuffer());
  if (stale()) throw new Error("cancelled");
  const xmp = xmpPacket(style.source_type, style.name.en, catalogue.software, catalogue.provider, contentId());
  const labelled = labelJpeg(jpeg, xmp);
  return { pixels: result, width, height, faces, jpeg: labelled, networkSeconds };
}

self.onmessage = async ({ data }) => {
  const reply = (message, transfer = []) => self.postMessage({ id: data.id, ...message }, transfer);
  try {
    if (data.type === "init") {
      reply({ type: "ready", ...(await init(data.threads)) });
    } else if (data.type === "load") {
      reply({ type: "loaded", ...(await load(data, (step) => reply({ type: "progress", step }))) });
    } else if (data.type === "tiles") {
      reply({ type: "tiles-done", ...(await tiles(data, reply)) });
    } else if (data.type === "style") {
      const result = await style(data, (step) => reply({ type: "progress", step }));
      reply({ type: "result", ...result }, [result.pixels.buffer, result.jpeg.buffer]);
    } else if (data.type === "cancel") {
      styleGeneration++;
      reply({ type: "cancelled" });
    } else if (data.type === "release") {
      photoGeneration++;
      release();
      reply({ type: "released" });
    }
  } catch (error) {
    reply({ type: "error", reason: String(error && error.message ? error.message : error) });
  }
};
