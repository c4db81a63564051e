// BlazeFace face detection in the page: the same ONNX models, input, decoding and merging as the
// server's inference/faces.py (read that file's comments for the why). No DOM and no runtime
// here: the caller passes `run(spec, tensor)`, which runs one model (onnxruntime-web in the
// worker, the same vendored runtime under `node --test`).

import { roundHalfEven } from "./core.js";

export const SUPPRESSION_IOU = 0.3;
export const MIN_FACE_SCORE = 0.7;
export const SMALL_FACE = 0.12;
export const TILES = 3;

function makeAnchors(side, strides, perCell) {
  const centres = [];
  let layer = 0;
  while (layer < strides.length) {
    const stride = strides[layer];
    let repeats = 0;
    while (layer < strides.length && strides[layer] === stride) { repeats += perCell; layer++; }
    const cells = Math.ceil(side / stride);
    for (let y = 0; y < cells; y++) {
      for (let x = 0; x < cells; x++) {
        for (let r = 0; r < repeats; r++) centres.push((x + 0.5) / cells, (y + 0.5) / cells);
      }
    }
  }
  return Float64Array.from(centres);
}

// MediaPipe's face_detection_{short,full}_range_common.pbtxt
export const SHORT_RANGE = { model: "face_short_range", side: 128, strides: [8, 16, 16, 16], perCell: 2, minScore: 0.5 };
export const FULL_RANGE = { model: "face_full_range", side: 192, strides: [4], perCell: 1, minScore: 0.6 };
for (const spec of [SHORT_RANGE, FULL_RANGE]) spec.anchors = makeAnchors(spec.side, spec.strides, spec.perCell);

// Where the m samples of each of `cells` input pixels fall along a side of `length`.
function samplePositions(cells, length, m) {
  const out = new Int32Array(cells * m);
  for (let j = 0; j < cells; j++) {
    for (let a = 0; a < m; a++) out[j * m + a] = Math.floor(((2 * j * m + 2 * a + 1) * length) / (2 * m * cells));
  }
  return out;
}

// The window (x0, y0, w, h) of an RGBA picture `stride` pixels wide as a [1, 3, side, side] tensor
// in -1..1, letterboxed: each input pixel the mean of an m x m grid of picture pixels.
export function networkInput(rgba, stride, x0, y0, width, height, side) {
  const longSide = Math.max(width, height);
  const newW = Math.max(1, roundHalfEven((width * side) / longSide));
  const newH = Math.max(1, roundHalfEven((height * side) / longSide));
  const m = Math.min(3, Math.max(1, Math.floor(longSide / side)));
  const ys = samplePositions(newH, height, m), xs = samplePositions(newW, width, m);
  const padX = Math.floor((side - newW) / 2), padY = Math.floor((side - newH) / 2);
  const plane = side * side, data = new Float32Array(3 * plane).fill(-1);
  const count = m * m;
  for (let y = 0; y < newH; y++) {
    for (let x = 0; x < newW; x++) {
      let r = 0, g = 0, b = 0;
      for (let a = 0; a < m; a++) {
        const row = (y0 + ys[y * m + a]) * stride;
        for (let c = 0; c < m; c++) {
          const p = (row + x0 + xs[x * m + c]) * 4;
          r += rgba[p]; g += rgba[p + 1]; b += rgba[p + 2];
        }
      }
      const o = (padY + y) * side + padX + x;
      data[o] = r / count / 127.5 - 1;
      data[plane + o] = g / count / 127.5 - 1;
      data[2 * plane + o] = b / count / 127.5 - 1;
    }
  }
  const scale = width >= height ? newW / width : newH / height;
  return { data, dims: [1, 3, side, side], letterbox: { scale, padX, padY } };
}

export function iou(a, b) {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

// MediaPipe's WEIGHTED non-maximum suppression over [score, box] pairs.
export function weightedNms(detections, threshold = SUPPRESSION_IOU) {
  let remaining = detections.slice().sort((p, q) => q[0] - p[0]);
  const kept = [];
  while (remaining.length) {
    const best = remaining[0][1], close = [], rest = [];
    for (const d of remaining) (iou(best, d[1]) > threshold ? close : rest).push(d);
    let total = 0, box = [0, 0, 0, 0];
    for (const [score, b] of close) {
      total += score;
      box = box.map((v, i) => v + score * b[i]);
    }
    kept.push([remaining[0][0], box.map((v) => v / total)]);
    remaining = rest;
  }
  return kept;
}

// Raw outputs ([N*16] regressors, [N] logits) -> [score, [x0, y0, x1, y1]] in 0..1 of the input.
export function decode(regressors, classificators, spec) {
  const side = spec.side, candidates = [];
  for (let i = 0; i < classificators.length; i++) {
    const logit = Math.min(100, Math.max(-100, classificators[i]));
    const score = 1 / (1 + Math.exp(-logit));
    if (score < spec.minScore) continue;
    const r = i * 16;
    const cx = regressors[r] / side + spec.anchors[2 * i];
    const cy = regressors[r + 1] / side + spec.anchors[2 * i + 1];
    const w = regressors[r + 2] / side, h = regressors[r + 3] / side;
    if (w > 0 && h > 0) candidates.push([score, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]]);
  }
  return weightedNms(candidates);
}

function toPicture(box, side, { scale, padX, padY }) {
  return [(box[0] * side - padX) / scale, (box[1] * side - padY) / scale, (box[2] * side - padX) / scale, (box[3] * side - padY) / scale];
}

export function needsTiles(faces, width, height) {
  if (faces.length !== 1) return true;
  const box = faces[0][1];
  return box[2] - box[0] < SMALL_FACE * Math.max(width, height);
}

export function tiles(width, height, count = TILES) {
  const tw = Math.floor((2 * width) / (count + 1)), th = Math.floor((2 * height) / (count + 1));
  const out = [];
  for (let j = 0; j < count; j++) {
    for (let i = 0; i < count; i++) {
      const x = Math.floor((i * (width - tw)) / (count - 1)), y = Math.floor((j * (height - th)) / (count - 1));
      out.push([x, y, x + tw, y + th]);
    }
  }
  return out;
}

export function facesFrom(detections, width, height) {
  const faces = [];
  for (const [score, [x0, y0, x1, y1]] of detections) {
    const left = Math.max(0, roundHalfEven(x0)), top = Math.max(0, roundHalfEven(y0));
    const right = Math.min(width, roundHalfEven(x1)), bottom = Math.min(height, roundHalfEven(y1));
    if (right > left && bottom > top) faces.push({ x: left, y: top, width: right - left, height: bottom - top, score });
  }
  return faces.sort((a, b) => b.width * b.height - a.width * a.height || a.x - b.x || a.y - b.y);
}

// One model on one window of the picture: detections in picture pixels.
async function detectIn(rgba, stride, window, spec, run) {
  const [x0, y0, x1, y1] = window;
  const input = networkInput(rgba, stride, x0, y0, x1 - x0, y1 - y0, spec.side);
  const { regressors, classificators } = await run(spec, input);
  return decode(regressors, classificators, spec).map(([score, box]) => {
    const b = toPicture(box, spec.side, input.letterbox);
    return [score, [b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0]];
  });
}

// Faces in an RGBA picture, largest first: short and full range on the whole picture, then full
// range in tiles unless that found exactly one large face (a selfie).
export async function detectFaces(rgba, width, height, run) {
  const whole = [0, 0, width, height];
  const found = [...(await detectIn(rgba, width, whole, SHORT_RANGE, run)), ...(await detectIn(rgba, width, whole, FULL_RANGE, run))];
  let faces = weightedNms(found);
  if (needsTiles(faces, width, height)) {
    for (const window of tiles(width, height)) found.push(...(await detectIn(rgba, width, window, FULL_RANGE, run)));
    faces = weightedNms(found);
  }
  return facesFrom(faces.filter(([score]) => score >= MIN_FACE_SCORE), width, height);
}
