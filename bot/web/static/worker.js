// The page's worker: loads the pinned runtime and the verified model once, then styles pictures
// off the page's thread. The picture stays in this browser: nothing here sends it anywhere.

import * as ort from "./vendor/ort.wasm.min.mjs";
import {
  blend, fitSize, keepColours, labelJpeg, orientationTransform, orientedSize, phaseInput, phaseOutput, readJpegInfo,
  sha256Hex, xmpPacket,
} from "./core.js";
import { detectFaces, FULL_RANGE, SHORT_RANGE } from "./blazeface.js";

let catalogue = null, session = null;
const faceSessions = new Map(); // BlazeFace spec -> its onnxruntime-web session

async function verifiedBytes(model) {
  const response = await fetch(model.url);
  if (!response.ok) throw new Error("model-missing");
  const bytes = new Uint8Array(await response.arrayBuffer());
  // The server checked this file against the catalogue; check again here, on what arrived.
  if ((await sha256Hex(bytes)) !== model.sha256) throw new Error("model-checksum");
  return bytes;
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
  session = await ort.InferenceSession.create(model, options);
  faceSessions.set(SHORT_RANGE, await ort.InferenceSession.create(shortRange, options));
  faceSessions.set(FULL_RANGE, await ort.InferenceSession.create(fullRange, options));
  return { threads: ort.env.wasm.numThreads, seconds: (performance.now() - started) / 1000 };
}

// One BlazeFace model on one input tensor (blazeface.js decides which and decodes the outputs).
async function runFaces(spec, input) {
  const faces = faceSessions.get(spec);
  const tensor = new ort.Tensor("float32", input.data, input.dims);
  const out = await faces.run({ [faces.inputNames[0]]: tensor });
  const regressors = out[faces.outputNames[0]], classificators = out[faces.outputNames[1]];
  const result = { regressors: regressors.data.slice(), classificators: classificators.data.slice() };
  tensor.dispose?.(); regressors.dispose?.(); classificators.dispose?.();
  return result;
}

async function decode(blob, maxSide) {
  // createImageBitmap applies EXIF orientation ("from-image"). An older webview that ignores a
  // quarter turn (what phones write) is caught by comparing with the JPEG's own size and tag,
  // and the picture is turned here instead.
  const info = readJpegInfo(new Uint8Array(await blob.slice(0, 262144).arrayBuffer()));
  const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
  const turnHere = info.orientation > 1 && info.width === bitmap.width && info.height === bitmap.height &&
    (info.orientation >= 5 ? info.width !== info.height : false);
  const upright = turnHere ? orientedSize(bitmap.width, bitmap.height, info.orientation) : { width: bitmap.width, height: bitmap.height };
  const size = fitSize(upright.width, upright.height, maxSide);
  const canvas = new OffscreenCanvas(size.width, size.height);
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.imageSmoothingQuality = "high";
  if (turnHere) {
    g.scale(size.width / upright.width, size.height / upright.height);
    g.transform(...orientationTransform(info.orientation, bitmap.width, bitmap.height));
    g.drawImage(bitmap, 0, 0);
  } else {
    g.drawImage(bitmap, 0, 0, size.width, size.height);
  }
  bitmap.close();
  return { rgba: g.getImageData(0, 0, size.width, size.height).data, width: size.width, height: size.height };
}

async function style({ blob, styleKey, strength, keepColours: keep, faceAware, maxSide }, progress) {
  const style = catalogue.styles.find((s) => s.key === styleKey);
  if (!style) throw new Error("unknown-style");
  progress("decode");
  const picture = await decode(blob, maxSide);
  const { rgba, width, height } = picture;
  if (Math.min(width, height) < 32) throw new Error("too-small");
  progress("faces");
  const faces = faceAware
    ? (await detectFaces(rgba, width, height, runFaces)).map(({ x, y, width: w, height: h }) => ({ x, y, width: w, height: h }))
    : [];
  progress("network");
  const input = phaseInput(rgba, width, height);
  const started = performance.now();
  const feeds = {
    image: new ort.Tensor("float32", input.data, input.dims),
    style_weights: new ort.Tensor("float32", Float32Array.from(style.weights), [26]),
  };
  const output = await session.run(feeds);
  const networkSeconds = (performance.now() - started) / 1000;
  feeds.image.dispose?.();
  const out = output[session.outputNames[0]];
  let styled = phaseOutput(out.data, input.h4, input.w4, width, height);
  out.dispose?.();
  progress("finish");
  if (keep) styled = keepColours(styled, rgba, width, height);
  const result = blend(rgba, styled, width, height, strength, faces, style.face_strength);
  rgba.fill(0); // the decoded photo is not needed any more
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").putImageData(new ImageData(result, width, height), 0, 0);
  const jpeg = new Uint8Array(await (await canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 })).arrayBuffer());
  const labelled = labelJpeg(jpeg, xmpPacket(style.source_type, style.name.en, catalogue.software));
  return { pixels: result, width, height, faces, jpeg: labelled, networkSeconds };
}

self.onmessage = async ({ data }) => {
  const reply = (message, transfer = []) => self.postMessage({ id: data.id, ...message }, transfer);
  try {
    if (data.type === "init") {
      reply({ type: "ready", ...(await init(data.threads)) });
    } else if (data.type === "style") {
      const result = await style(data, (step) => reply({ type: "progress", step }));
      reply({ type: "result", ...result }, [result.pixels.buffer, result.jpeg.buffer]);
    }
  } catch (error) {
    reply({ type: "error", reason: String(error && error.message ? error.message : error) });
  }
};
