// The page's BlazeFace against the server's (inference/faces.py) on the portraits and pictures of
// the face test set: the input tensors bit for bit, the decoding of the same raw outputs to the
// last bit, the vendored onnxruntime-web's outputs close to onnxruntime's, the faces the same.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { pathToFileURL } from "node:url";
import { refs, raw, rgbToRgba, DIR } from "./refs.mjs";
import * as B from "../../../bot/web/static/blazeface.js";

const SPECS = { face_short_range: B.SHORT_RANGE, face_full_range: B.FULL_RANGE };
const floats = (entry) => { const b = fs.readFileSync(path.join(DIR, entry.file)); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };
const key = (f) => (Array.isArray(f) ? f : [f.x, f.y, f.width, f.height]).join(",");

async function runtime() {
  const vendor = new URL("../../../bot/web/static/vendor/", import.meta.url);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "darkroom-ort-faces-"));
  for (const name of ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]) {
    fs.writeFileSync(path.join(dir, name), zlib.brotliDecompressSync(fs.readFileSync(new URL(name + ".br", vendor))));
  }
  const ort = await import(pathToFileURL(path.join(dir, "ort.wasm.min.mjs")).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = pathToFileURL(dir + path.sep).href;
  return { ort, dir };
}

const { ort, dir } = await runtime();
const sessions = new Map();
for (const [model, file] of Object.entries(refs.face_models)) {
  sessions.set(SPECS[model], await ort.InferenceSession.create(new Uint8Array(fs.readFileSync(file)), { executionProviders: ["wasm"] }));
}
async function run(spec, input) {
  const session = sessions.get(spec);
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", input.data, input.dims) });
  return { regressors: out[session.outputNames[0]].data, classificators: out[session.outputNames[1]].data };
}

test("anchors: 896 for short range, 2304 for full range (MediaPipe's pbtxt)", () => {
  assert.equal(B.SHORT_RANGE.anchors.length, 2 * 896);
  assert.equal(B.FULL_RANGE.anchors.length, 2 * 2304);
});

test("tiles: nine windows half the picture, half a window apart", () => {
  const t = B.tiles(1280, 960);
  assert.equal(t.length, 9);
  assert.deepEqual(t[0], [0, 0, 640, 480]);
  assert.deepEqual(t[1], [320, 0, 960, 480]);
  assert.deepEqual(t[8], [640, 480, 1280, 960]);
});

for (const [name, p] of Object.entries(refs.portraits)) {
  const rgba = rgbToRgba(raw(p.rgb));

  test(`${name}: network inputs equal the server's bit for bit`, () => {
    for (const pass of p.passes) {
      const [x0, y0, x1, y1] = pass.window;
      const input = B.networkInput(rgba, p.width, x0, y0, x1 - x0, y1 - y0, SPECS[pass.model].side);
      assert.deepEqual([input.letterbox.scale, input.letterbox.padX, input.letterbox.padY], pass.letterbox);
      assert.deepEqual(input.data, floats(pass.input), `${pass.model} ${pass.window}`);
    }
  });

  test(`${name}: decoding the server's raw outputs gives the server's detections`, () => {
    for (const pass of p.passes) {
      const mine = B.decode(floats(pass.regressors), floats(pass.classificators), SPECS[pass.model]);
      assert.equal(mine.length, pass.decoded.length, `${pass.model} ${pass.window}`);
      mine.forEach(([score, box], i) => {
        const [theirScore, theirBox] = pass.decoded[i];
        assert.ok(Math.abs(score - theirScore) < 1e-12, `score ${score} vs ${theirScore}`);
        box.forEach((v, j) => assert.ok(Math.abs(v - theirBox[j]) < 1e-12, `box ${box} vs ${theirBox}`));
      });
    }
  });

  test(`${name}: onnxruntime-web's outputs match onnxruntime's`, async () => {
    for (const pass of p.passes) {
      const [x0, y0, x1, y1] = pass.window;
      const input = B.networkInput(rgba, p.width, x0, y0, x1 - x0, y1 - y0, SPECS[pass.model].side);
      const out = await run(SPECS[pass.model], input);
      for (const [mine, theirs] of [[out.regressors, floats(pass.regressors)], [out.classificators, floats(pass.classificators)]]) {
        let max = 0;
        for (let i = 0; i < mine.length; i++) max = Math.max(max, Math.abs(mine[i] - theirs[i]));
        assert.ok(max < 2e-3, `${pass.model}: max difference ${max}`);
      }
    }
  });

  test(`${name}: detectFaces finds the server's faces`, async () => {
    const faces = await B.detectFaces(rgba, p.width, p.height, run);
    assert.ok(p.faces.length >= 1);
    assert.deepEqual(faces.map(key), p.faces.map(key));
  });
}

test("weighted NMS: overlapping boxes merge by score, apart ones stay", () => {
  const merged = B.weightedNms([[0.3, [2, 0, 12, 10]], [0.8, [50, 50, 60, 60]], [0.9, [0, 0, 10, 10]]]);
  assert.deepEqual(merged.map(([s]) => s), [0.9, 0.8]);
  assert.ok(Math.abs(merged[0][1][0] - 0.5) < 1e-12 && Math.abs(merged[0][1][2] - 10.5) < 1e-12);
});

test.after(async () => {
  for (const session of sessions.values()) await session.release();
  fs.rmSync(dir, { recursive: true, force: true });
});
