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
import { refs, raw, file, rgbToRgba, compareRgb } from "./refs.mjs";
import * as C from "../../../bot/web/static/core.js";

const VENDOR = new URL("../../../bot/web/static/vendor/", import.meta.url);

async function runtime() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "darkroom-ort-"));
  for (const name of ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]) {
    fs.writeFileSync(path.join(dir, name), zlib.brotliDecompressSync(fs.readFileSync(new URL(name + ".br", VENDOR))));
  }
  const ort = await import(pathToFileURL(path.join(dir, "ort.wasm.min.mjs")).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = pathToFileURL(dir + path.sep).href;
  return { ort, dir };
}

const { ort, dir } = await runtime();
const n = refs.network;
const [h, w] = n.rgb.shape;
const rgba = rgbToRgba(raw(n.rgb));
const weights = () => new ort.Tensor("float32", Float32Array.from(n.weights), [26]);

test("the served graph (the engine's own) in WASM matches the engine at 512x384", async () => {
  const session = await ort.InferenceSession.create(file(refs.served_model), { executionProviders: ["wasm"] });
  const input = C.phaseInput(rgba, w, h);
  const out = await session.run({ image: new ort.Tensor("float32", input.data, input.dims), style_weights: weights() });
  const styled = C.phaseOutput(out[session.outputNames[0]].data, input.h4, input.w4, w, h);
  const cmp = compareRgb(styled, raw(n.styled));
  assert.ok(cmp.max <= 1, `max difference ${cmp.max}`);
  assert.ok(cmp.psnr >= 60, `PSNR ${cmp.psnr}`);
  await session.release();
});

test("the shipped multistyle26.onnx, unchanged, in WASM matches the engine at 512x384", async () => {
  const model = fs.readFileSync(refs.shipped_model);
  assert.equal(crypto.createHash("sha256").update(model).digest("hex"), refs.shipped_sha256);
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  const input = C.networkInput(rgba, w, h);
  const out = await session.run({ image: new ort.Tensor("float32", input.data, [1, 3, input.h4, input.w4]), style_weights: weights() });
  const styled = C.networkOutput(out[session.outputNames[0]].data, input.h4, input.w4, w, h);
  const cmp = compareRgb(styled, raw(n.styled));
  assert.ok(cmp.max <= 1, `max difference ${cmp.max}`);
  assert.ok(cmp.psnr >= 60, `PSNR ${cmp.psnr}`);
  await session.release();
});

test("odd sizes: phase layout in and out round-trips every pixel", () => {
  for (const [ww, hh] of [[37, 45], [40, 33], [32, 32]]) {
    const img = new Uint8ClampedArray(ww * hh * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7) % 256));
    const input = C.phaseInput(img, ww, hh);
    const [, , H, W] = input.dims;
    assert.equal(H, input.h4 + 8);
    // the picture sits at (4, 4); build the phase tensor of the inner block and read it back
    const qh = input.h4 / 4, qw = input.w4 / 4, phases = new Uint8Array(48 * qh * qw);
    for (let c = 0; c < 3; c++) for (let y = 0; y < input.h4; y++) for (let x = 0; x < input.w4; x++) {
      phases[(c * 16 + (y % 4) * 4 + (x % 4)) * qh * qw + (y >> 2) * qw + (x >> 2)] = input.data[c * H * W + (y + 4) * W + x + 4];
    }
    assert.deepEqual(C.phaseOutput(phases, input.h4, input.w4, ww, hh), img);
  }
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
