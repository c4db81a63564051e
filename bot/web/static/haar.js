// OpenCV's Haar cascade detector in plain JS, evaluating the very cascade files the server uses
// (haarcascade_frontalface_alt2.xml and haarcascade_profileface.xml from opencv-python), with
// OpenCV 4's detectMultiScale steps: an image pyramid by bit-exact bilinear resizing, integral images,
// variance-normalised features, tree-based stages, and groupRectangles. Then the server's own
// steps around it (inference/faces.py): grey, fit to 480/320 px, equalise, frontal + both
// profiles, merge, largest first.

import { roundHalfEven } from "./core.js";

const f32 = Math.fround;
const THRESHOLD_EPS = f32(1e-5);

// ---- the cascade file -------------------------------------------------------------------------

export function parseCascade(xml) {
  const top = xml.slice(xml.indexOf("<cascade"));
  const width = parseInt(/<width>\s*(\d+)\s*<\/width>/.exec(top)[1], 10);
  const height = parseInt(/<height>\s*(\d+)\s*<\/height>/.exec(top)[1], 10);
  if (!/<featureType>\s*HAAR\s*<\/featureType>/.test(top)) throw new Error("not a Haar cascade");
  const stagesText = top.slice(top.indexOf("<stages>"), top.indexOf("</stages>"));
  const featuresText = top.slice(top.indexOf("<features>"), top.indexOf("</features>"));
  const stages = [], nodes = [], leaves = [], trees = [];
  const parts = stagesText.split("<stageThreshold>").slice(1);
  for (const part of parts) {
    const threshold = f32(f32(parseFloat(part)) - THRESHOLD_EPS);
    const first = trees.length;
    const weak = /<internalNodes>([^<]*)<\/internalNodes>\s*<leafValues>([^<]*)<\/leafValues>/g;
    let m;
    while ((m = weak.exec(part)) !== null) {
      const values = m[1].trim().split(/\s+/).map(Number);
      const nodeCount = values.length / 4;
      trees.push({ nodeOffset: nodes.length, leafOffset: leaves.length, nodeCount });
      for (let i = 0; i < values.length; i += 4) {
        nodes.push({ left: values[i] | 0, right: values[i + 1] | 0, feature: values[i + 2] | 0, threshold: f32(values[i + 3]) });
      }
      for (const v of m[2].trim().split(/\s+/)) leaves.push(f32(parseFloat(v)));
    }
    stages.push({ threshold, first, count: trees.length - first });
  }
  const features = [];
  const rectsRe = /<rects>([\s\S]*?)<\/rects>/g;
  let r;
  while ((r = rectsRe.exec(featuresText)) !== null) {
    const rects = [];
    for (const one of r[1].matchAll(/<_>([^<]*)<\/_>/g)) {
      const [x, y, w, h, weight] = one[1].trim().split(/\s+/).map(Number);
      rects.push({ x, y, w, h, weight: f32(weight) });
    }
    features.push(rects);
  }
  if (/<tilted>\s*1/.test(featuresText)) throw new Error("tilted features are not supported");
  return { width, height, stages, nodes, leaves, trees, features };
}

// ---- image steps (OpenCV's, to the bit where it matters) -------------------------------------

// cv2.cvtColor(RGB2GRAY) on 8-bit: fixed point, 15 bits.
export function rgbaToGrey(rgba, width, height) {
  const grey = new Uint8Array(width * height);
  for (let i = 0, p = 0; p < grey.length; p++, i += 4) {
    grey[p] = (rgba[i] * 9798 + rgba[i + 1] * 19235 + rgba[i + 2] * 3735 + 16384) >> 15;
  }
  return grey;
}

// cv2.resize(INTER_AREA) for shrinking: each output pixel is the area-weighted mean.
export function resizeArea(src, w, h, nw, nh) {
  const tab = (ssize, dsize) => {
    const scale = ssize / dsize, out = [];
    for (let d = 0; d < dsize; d++) {
      const taps = [];
      const fs1 = d * scale, fs2 = fs1 + scale;
      const cell = Math.min(scale, ssize - fs1);
      let s1 = Math.ceil(fs1), s2 = Math.floor(fs2);
      s2 = Math.min(s2, ssize - 1);
      s1 = Math.min(s1, s2);
      if (s1 - fs1 > 1e-3) taps.push([s1 - 1, f32((s1 - fs1) / cell)]);
      for (let s = s1; s < s2; s++) taps.push([s, f32(1 / cell)]);
      if (fs2 - s2 > 1e-3) taps.push([s2, f32(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
      out.push(taps);
    }
    return out;
  };
  const xt = tab(w, nw), yt = tab(h, nh);
  const out = new Uint8Array(nw * nh);
  const row = new Float32Array(nw), acc = new Float32Array(nw);
  for (let y = 0; y < nh; y++) {
    acc.fill(0);
    for (const [sy, beta] of yt[y]) {
      for (let x = 0; x < nw; x++) {
        let s = 0;
        for (const [sx, alpha] of xt[x]) s = f32(s + f32(src[sy * w + sx] * alpha));
        row[x] = s;
      }
      for (let x = 0; x < nw; x++) acc[x] = f32(acc[x] + f32(beta * row[x]));
    }
    for (let x = 0; x < nw; x++) out[y * nw + x] = Math.min(255, Math.max(0, roundHalfEven(acc[x])));
  }
  return out;
}

export function equalizeHist(src) {
  const hist = new Int32Array(256);
  for (const v of src) hist[v]++;
  let i = 0;
  while (i < 256 && !hist[i]) i++;
  const lut = new Uint8Array(256);
  const total = src.length;
  if (hist[i] === total) {
    lut[i] = i;
  } else {
    const scale = f32(255 / (total - hist[i]));
    let sum = 0;
    lut[i++] = 0;
    for (; i < 256; i++) {
      sum += hist[i];
      lut[i] = Math.min(255, roundHalfEven(f32(sum * scale)));
    }
  }
  const out = new Uint8Array(src.length);
  for (let p = 0; p < src.length; p++) out[p] = lut[src[p]];
  return out;
}

export function flipHorizontal(src, w, h) {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = src[y * w + w - 1 - x];
  return out;
}

// cv2.resize(INTER_LINEAR_EXACT) on 8-bit grey: OpenCV's bit-exact bilinear resize (8-bit
// fixed-point coefficients per axis, rounding once at the end), which OpenCV 4's cascade
// detector uses for its image pyramid.
export function resizeLinearExact(src, w, h, nw, nh) {
  if (nw === w && nh === h) return src.slice();
  const taps = (dsize, ssize) => {
    const scale = 1 / (dsize / ssize);
    const ofs = new Int32Array(dsize), c1 = new Int32Array(dsize);
    for (let d = 0; d < dsize; d++) {
      const f = scale * (d + 0.5) - 0.5;
      const i = Math.floor(f);
      if (i < 0 || ssize <= 1) { ofs[d] = 0; c1[d] = 0; }
      else if (i >= ssize - 1) { ofs[d] = ssize - 1; c1[d] = 0; }
      else { ofs[d] = i; c1[d] = Math.min(256, roundHalfEven((f - i) * 256)); }
    }
    return { ofs, c1 };
  };
  const xt = taps(nw, w), yt = taps(nh, h);
  const line = (sy) => {
    const r = new Int32Array(nw), base = sy * w;
    for (let x = 0; x < nw; x++) {
      const sx = xt.ofs[x], c = xt.c1[x];
      r[x] = src[base + sx] * (256 - c) + (c ? src[base + sx + 1] * c : 0);
    }
    return r;
  };
  const out = new Uint8Array(nw * nh);
  let cacheY = -1, cache0 = null, cache1 = null;
  for (let y = 0; y < nh; y++) {
    const sy = yt.ofs[y], b1 = yt.c1[y], b0 = 256 - b1;
    if (sy !== cacheY) {
      cache0 = sy === cacheY + 1 && cache1 ? cache1 : line(sy);
      cache1 = sy + 1 < h ? line(sy + 1) : cache0;
      cacheY = sy;
    }
    for (let x = 0; x < nw; x++) {
      const v = (cache0[x] * b0 + cache1[x] * b1 + 32768) >>> 16;
      out[y * nw + x] = v > 255 ? 255 : v;
    }
  }
  return out;
}

function integrals(img, w, h, stride = w + 1) {
  const W = stride;  // every pyramid level uses the first level's stride, as OpenCV's buffer does
  const sum = new Int32Array(W * (h + 1)), sq = new Int32Array(W * (h + 1));
  for (let y = 0; y < h; y++) {
    let rs = 0, rq = 0;
    for (let x = 0; x < w; x++) {
      const v = img[y * w + x];
      rs += v; rq = (rq + v * v) | 0;
      sum[(y + 1) * W + x + 1] = sum[y * W + x + 1] + rs;
      sq[(y + 1) * W + x + 1] = (sq[y * W + x + 1] + rq) | 0;
    }
  }
  return { sum, sq, W };
}

// ---- detectMultiScale ------------------------------------------------------------------------

// The cascade flattened into typed arrays, with every rectangle as four offsets into an
// integral image of row stride W (OpenCV's OptFeature), so a window costs no allocation.
function compiled(cascade, W) {
  cascade.byStride ??= new Map();
  let c = cascade.byStride.get(W);
  if (c) return c;
  const { nodes, trees, stages, features, leaves } = cascade;
  const nf = features.length;
  const ofs = new Int32Array(nf * 12), weight = new Float32Array(nf * 3), third = new Uint8Array(nf);
  features.forEach((rects, f) => {
    rects.slice(0, 3).forEach((r, k) => {
      const o = f * 12 + k * 4;
      ofs[o] = r.y * W + r.x; ofs[o + 1] = r.y * W + r.x + r.w;
      ofs[o + 2] = (r.y + r.h) * W + r.x; ofs[o + 3] = (r.y + r.h) * W + r.x + r.w;
      weight[f * 3 + k] = r.weight;
    });
    third[f] = rects.length > 2 && rects[2].weight !== 0 ? 1 : 0;
  });
  c = {
    ofs, weight, third,
    left: Int32Array.from(nodes, (n) => n.left), right: Int32Array.from(nodes, (n) => n.right),
    feature: Int32Array.from(nodes, (n) => n.feature), threshold: Float32Array.from(nodes, (n) => n.threshold),
    leaves: Float32Array.from(leaves),
    treeNode: Int32Array.from(trees, (t) => t.nodeOffset), treeLeaf: Int32Array.from(trees, (t) => t.leafOffset),
    stageFirst: Int32Array.from(stages, (t) => t.first), stageEnd: Int32Array.from(stages, (t) => t.first + t.count),
    stageThreshold: Float32Array.from(stages, (t) => t.threshold),
    norm: [W + 1, W + cascade.width - 1, (cascade.height - 1) * W + 1, (cascade.height - 1) * W + cascade.width - 1],
    area: (cascade.width - 2) * (cascade.height - 2),
  };
  if (cascade.byStride.size >= 4) cascade.byStride.clear();  // a few picture sizes at a time
  cascade.byStride.set(W, c);
  return c;
}

// OpenCV's runAt for a window at integral offset p: 1 (a face), -1 (flat window), or -stage.
function evaluate(c, sum, sq, p) {
  const [n0, n1, n2, n3] = c.norm;
  const valsum = (sum[p + n0] - sum[p + n1] - sum[p + n2] + sum[p + n3]) | 0;
  const valsq = ((sq[p + n0] - sq[p + n1] - sq[p + n2] + sq[p + n3]) | 0) >>> 0;
  let nf = c.area * valsq - valsum * valsum;
  if (!(nf > 0)) return -1;
  nf = Math.sqrt(nf);
  const vnf = f32(1 / nf);
  if (!(c.area * vnf < 1e-1)) return -1;
  const { ofs, weight, third, left, right, feature, threshold, leaves, treeNode, treeLeaf, stageFirst, stageEnd, stageThreshold } = c;
  for (let si = 0; si < stageFirst.length; si++) {
    let total = 0;
    for (let t = stageFirst[si]; t < stageEnd[si]; t++) {
      const root = treeNode[t];
      let idx = 0;
      do {
        const node = root + idx, f = feature[node], o = f * 12, q = p;
        let ret = f32(f32(weight[f * 3] * ((sum[q + ofs[o]] - sum[q + ofs[o + 1]] - sum[q + ofs[o + 2]] + sum[q + ofs[o + 3]]) | 0)) +
                      f32(weight[f * 3 + 1] * ((sum[q + ofs[o + 4]] - sum[q + ofs[o + 5]] - sum[q + ofs[o + 6]] + sum[q + ofs[o + 7]]) | 0)));
        if (third[f]) {
          ret = f32(ret + f32(weight[f * 3 + 2] * ((sum[q + ofs[o + 8]] - sum[q + ofs[o + 9]] - sum[q + ofs[o + 10]] + sum[q + ofs[o + 11]]) | 0)));
        }
        idx = f32(ret * vnf) < threshold[node] ? left[node] : right[node];
      } while (idx > 0);
      total += leaves[treeLeaf[t] - idx];
    }
    if (total < stageThreshold[si]) return -si;
  }
  return 1;
}

// Candidates before grouping (what cv2 returns with minNeighbors=0), then grouped.
export function detectCandidates(cascade, grey, w, h, { scaleFactor = 1.1, minSize = 0 } = {}) {
  const scales = [];
  for (let factor = 1; ; factor *= scaleFactor) {
    const ww = roundHalfEven(cascade.width * factor), wh = roundHalfEven(cascade.height * factor);
    if (ww > w || wh > h) break;
    if (ww < minSize || wh < minSize) continue;
    scales.push(f32(factor));
  }
  const found = [];
  const stride = scales.length ? roundHalfEven(f32(w / scales[0])) + 1 : 0;
  for (const sc of scales) {
    const sw = roundHalfEven(f32(w / sc)), sh = roundHalfEven(f32(h / sc));
    scanScale(cascade, resizeLinearExact(grey, w, h, sw, sh), sw, sh, sc, found, stride);
  }
  return found;
}

// One level of the pyramid: every window position, OpenCV's step and early skip.
export function scanScale(cascade, img, sw, sh, sc, found = [], stride = sw + 1) {
  const { sum, sq, W } = integrals(img, sw, sh, stride);
  const c = compiled(cascade, W);
  const step = sc >= 2 ? 1 : 2;
  const workW = Math.max(sw + 1 - cascade.width, 0), workH = Math.max(sh + 1 - cascade.height, 0);
  const winW = roundHalfEven(f32(cascade.width * sc)), winH = roundHalfEven(f32(cascade.height * sc));
  for (let y = 0; y < workH; y += step) {
    for (let x = 0; x < workW; x += step) {
      const result = evaluate(c, sum, sq, y * W + x);
      if (result > 0) found.push({ x: roundHalfEven(f32(x * sc)), y: roundHalfEven(f32(y * sc)), width: winW, height: winH });
      if (result === 0) x += step;
    }
  }
  return found;
}

function similar(a, b, eps) {
  const delta = eps * (Math.min(a.width, b.width) + Math.min(a.height, b.height)) * 0.5;
  return Math.abs(a.x - b.x) <= delta && Math.abs(a.y - b.y) <= delta &&
    Math.abs(a.x + a.width - b.x - b.width) <= delta && Math.abs(a.y + a.height - b.y - b.height) <= delta;
}

// cv::groupRectangles(rects, groupThreshold, eps)
export function groupRectangles(rects, threshold, eps = 0.2) {
  if (threshold <= 0 || !rects.length) return rects.slice();
  const parent = rects.map((_, i) => i);
  const find = (i) => { while (parent[i] !== i) { parent[i] = parent[parent[i]]; i = parent[i]; } return i; };
  for (let i = 0; i < rects.length; i++) {
    for (let j = i + 1; j < rects.length; j++) {
      if (similar(rects[i], rects[j], eps)) { const a = find(i), b = find(j); if (a !== b) parent[a] = b; }
    }
  }
  const classes = new Map();
  rects.forEach((r, i) => {
    const root = find(i);
    if (!classes.has(root)) classes.set(root, { x: 0, y: 0, width: 0, height: 0, n: 0 });
    const c = classes.get(root);
    c.x += r.x; c.y += r.y; c.width += r.width; c.height += r.height; c.n++;
  });
  const avg = [...classes.values()].map((c) => {
    const s = f32(1 / c.n);
    return { x: roundHalfEven(f32(c.x * s)), y: roundHalfEven(f32(c.y * s)), width: roundHalfEven(f32(c.width * s)),
             height: roundHalfEven(f32(c.height * s)), n: c.n };
  });
  const out = [];
  for (let i = 0; i < avg.length; i++) {
    const r1 = avg[i], n1 = r1.n;
    if (n1 <= threshold) continue;
    let inside = false;
    for (let j = 0; j < avg.length; j++) {
      const r2 = avg[j], n2 = r2.n;
      if (j === i || n2 <= threshold) continue;
      const dx = roundHalfEven(r2.width * eps), dy = roundHalfEven(r2.height * eps);
      if (r1.x >= r2.x - dx && r1.y >= r2.y - dy && r1.x + r1.width <= r2.x + r2.width + dx &&
          r1.y + r1.height <= r2.y + r2.height + dy && (n2 > Math.max(3, n1) || n1 < 3)) { inside = true; break; }
    }
    if (!inside) out.push({ x: r1.x, y: r1.y, width: r1.width, height: r1.height });
  }
  return out;
}

export function detectMultiScale(cascade, grey, w, h, { scaleFactor = 1.1, minNeighbors = 3, minSize = 0 } = {}) {
  const grouped = groupRectangles(detectCandidates(cascade, grey, w, h, { scaleFactor, minSize }), minNeighbors);
  // clipObjects: keep the part inside the image
  return grouped
    .map((r) => {
      const x0 = Math.max(0, r.x), y0 = Math.max(0, r.y);
      const x1 = Math.min(w, r.x + r.width), y1 = Math.min(h, r.y + r.height);
      return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
    })
    .filter((r) => r.width > 0 && r.height > 0);
}

// ---- the server's face steps (inference/faces.py) ---------------------------------------------

export const DETECT_SIDE = 480;
export const PROFILE_SIDE = 320;

export function scaledGrey(full, w, h, side) {
  const scale = Math.min(1, side / Math.max(h, w));
  let img = full, sw = w, sh = h;
  if (scale < 1) {
    sw = roundHalfEven(w * scale); sh = roundHalfEven(h * scale);
    img = resizeArea(full, w, h, sw, sh);
  }
  return { grey: equalizeHist(img), w: sw, h: sh, scale };
}

function run(cascade, s, neighbours, scaleFactor) {
  const minFace = Math.max(20, roundHalfEven(Math.min(s.w, s.h) * 0.06));
  return detectMultiScale(cascade, s.grey, s.w, s.h, { scaleFactor, minNeighbors: neighbours, minSize: minFace });
}

function overlap(a, b) {
  const ix = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  return inter ? inter / Math.min(a[2] * a[3], b[2] * b[3]) : 0;
}

// Faces in an RGBA picture, in its own pixel coordinates, largest first (FaceDetector.detect).
export function detectFaces(rgba, width, height, frontal, profile) {
  const full = rgbaToGrey(rgba, width, height);
  const boxes = [];
  const main = scaledGrey(full, width, height, DETECT_SIDE);
  for (const r of run(frontal, main, 5, 1.1)) boxes.push([r.x / main.scale, r.y / main.scale, r.width / main.scale, r.height / main.scale]);
  if (profile) {
    const small = scaledGrey(full, width, height, PROFILE_SIDE);
    for (const r of run(profile, small, 6, 1.2)) {
      boxes.push([r.x / small.scale, r.y / small.scale, r.width / small.scale, r.height / small.scale]);
    }
    // cv2.flip of the equalised picture (flip and equalisation commute)
    const mirrored = { ...small, grey: flipHorizontal(small.grey, small.w, small.h) };
    for (const r of run(profile, mirrored, 6, 1.2)) {
      boxes.push([(small.w - r.x - r.width) / small.scale, r.y / small.scale, r.width / small.scale, r.height / small.scale]);
    }
  }
  const kept = [];
  const sorted = boxes.slice().sort((a, b) => b[2] * b[3] - a[2] * a[3]); // stable, as Python's sorted
  for (const box of sorted) if (kept.every((o) => overlap(box, o) < 0.3)) kept.push(box);
  const faces = kept.map(([x, y, w, h]) => ({ x: roundHalfEven(x), y: roundHalfEven(y), width: roundHalfEven(w), height: roundHalfEven(h) }));
  return faces.sort((a, b) => b.width * b.height - a.width * a.height);
}
