// The vendored onnxruntime-web (WASM, the bytes the page loads) runs the shipped model on the
// same 512x384 picture as the server's engine, within a grey level.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import crypto from "node:crypto";
import { pathToFileURL } from "node:url";
import { refs, raw, rgbToRgba, compareRgb } from "./refs.mjs";
import * as C from "../../../bot/webapp_static/core.js";

const VENDOR = new URL("../../../bot/webapp_static/vendor/", import.meta.url);

test("WASM output matches the engine's at 512x384 (max 1 grey level, PSNR >= 60 dB)", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "darkroom-ort-"));
  for (const name of ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]) {
    fs.writeFileSync(path.join(dir, name), zlib.brotliDecompressSync(fs.readFileSync(new URL(name + ".br", VENDOR))));
  }
  const ort = await import(pathToFileURL(path.join(dir, "ort.wasm.min.mjs")).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = pathToFileURL(dir + path.sep).href;
  const model = fs.readFileSync(refs.model);
  assert.equal(crypto.createHash("sha256").update(model).digest("hex"), refs.model_sha256);
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  const n = refs.network;
  const [h, w] = n.rgb.shape;
  const input = C.networkInput(rgbToRgba(raw(n.rgb)), w, h);
  const out = await session.run({
    image: new ort.Tensor("float32", input.data, [1, 3, input.h4, input.w4]),
    style_weights: new ort.Tensor("float32", Float32Array.from(n.weights), [26]),
  });
  const styled = C.networkOutput(out[session.outputNames[0]].data, input.h4, input.w4, w, h);
  const cmp = compareRgb(styled, raw(n.styled));
  assert.ok(cmp.max <= 1, `max difference ${cmp.max}`);
  assert.ok(cmp.psnr >= 60, `PSNR ${cmp.psnr}`);
  await session.release();
  fs.rmSync(dir, { recursive: true, force: true });
});
