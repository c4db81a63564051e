// The page's pure image logic against the server's (Python) results.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refs, raw, file, rgbToRgba, compareRgb } from "./refs.mjs";
import * as C from "../../../bot/web/static/core.js";

test("EXIF orientation is read from the JPEG and applied as Pillow's exif_transpose does", () => {
  const base = rgbToRgba(raw(refs.orientation.base));
  for (const [value, c] of Object.entries(refs.orientation.cases)) {
    const info = C.readJpegInfo(file(c.jpeg));
    assert.equal(info.orientation, Number(value));
    assert.deepEqual([info.width, info.height], [7, 5]);
    const turned = C.orientPixels(base, 7, 5, Number(value));
    const size = C.orientedSize(7, 5, Number(value));
    assert.equal(size.width * size.height * 4, turned.length);
    assert.equal(compareRgb(turned, raw(c.expected)).max, 0, `orientation ${value}`);
  }
  assert.equal(C.readJpegInfo(new Uint8Array([0x89, 0x50, 0x4e, 0x47])).orientation, 1);
});

test("the long side is capped like the server's, lower with little memory", () => {
  assert.deepEqual(C.fitSize(4032, 3024, 1280), { width: 1280, height: 960 });
  assert.deepEqual(C.fitSize(3000, 1001, 1280), { width: 1280, height: 427 });
  assert.deepEqual(C.fitSize(800, 600, 1280), { width: 800, height: 600 });
  assert.equal(C.maxSideFor(undefined), 1280);
  assert.equal(C.maxSideFor(8), 1280);
  assert.equal(C.maxSideFor(2), 1024);
  assert.equal(C.maxSideFor(0.5), 768);
});

test("network input is reflect-padded to a multiple of 4 at the bottom and right", () => {
  const w = 5, h = 6;
  const rgba = new Uint8ClampedArray(w * h * 4).map((_, i) => (i % 4 === 3 ? 255 : i % 251));
  const { data, h4, w4 } = C.networkInput(rgba, w, h);
  assert.deepEqual([h4, w4], [8, 8]);
  const at = (c, y, x) => Math.round(data[c * h4 * w4 + y * w4 + x] * 255);
  assert.equal(at(0, 0, 0), rgba[0]);
  assert.equal(at(1, 6, 2), rgba[(4 * w + 2) * 4 + 1]); // row 6 mirrors row 4
  assert.equal(at(2, 7, 6), rgba[(3 * w + 2) * 4 + 2]); // row 7 -> 3, column 6 -> 2
});

test("keep colours equals OpenCV's integer YCrCb swap", () => {
  const n = refs.network;
  const [h, w] = n.rgb.shape;
  const out = C.keepColours(rgbToRgba(raw(n.styled)), rgbToRgba(raw(n.rgb)), w, h);
  assert.equal(compareRgb(out, raw(n.keep_colours)).max, 0);
});

test("blend: plain strength exactly, face-aware within a grey level or two", () => {
  const n = refs.network;
  const [h, w] = n.rgb.shape;
  const original = rgbToRgba(raw(n.rgb)), styled = rgbToRgba(raw(n.styled));
  const plain = C.blend(original, styled, w, h, 0.7, [], n.face_strength);
  assert.ok(compareRgb(plain, raw(n.blend_plain)).max <= 1);
  const faces = n.faces.map(([x, y, width, height]) => ({ x, y, width, height }));
  assert.ok(faces.length >= 1);
  const aware = C.blend(original, styled, w, h, 0.8, faces, n.face_strength);
  const cmp = compareRgb(aware, raw(n.blend));
  assert.ok(cmp.psnr >= 50, `PSNR ${cmp.psnr}`);
  assert.ok(cmp.max <= 4, `max ${cmp.max}`);
  // and the face really is styled more gently than the rest
  const far = compareRgb(C.blend(original, styled, w, h, 0.8, [], 1), raw(n.blend));
  assert.ok(far.psnr < cmp.psnr - 10);
});

test("the AI label is the server's XMP packet, and the JPEG keeps no other metadata", () => {
  const x = refs.xmp;
  assert.equal(C.xmpPacket(x.source, x.style, x.software, x.provider, x.content_id), x.packet);
  assert.ok(x.packet.includes("<TC260:AIGC>{&quot;Label&quot;") || x.packet.includes('<TC260:AIGC>{"Label"'));
  assert.match(C.contentId(), /^[0-9a-f]{32}$/);
  const exif = [0xff, 0xe1, 0x00, 0x0a, 0x45, 0x78, 0x69, 0x66, 0, 0, 1, 2];
  const jfif = [0xff, 0xe0, 0x00, 0x06, 0x4a, 0x46, 0x49, 0x46];
  const comment = [0xff, 0xfe, 0x00, 0x06, 0x5a, 0x51, 0x58, 0x4a];
  const rest = [0xff, 0xdb, 0x00, 0x03, 0x00, 0xff, 0xd9];
  const jpeg = Uint8Array.from([0xff, 0xd8, ...jfif, ...exif, ...comment, ...rest]);
  const out = C.labelJpeg(jpeg, x.packet);
  const text = new TextDecoder("latin1").decode(out);
  assert.ok(text.includes("Iptc4xmpExt:DigitalSourceType"));
  assert.ok(!text.includes("Exif"));
  assert.ok(!text.includes("ZQXJ"));
  assert.deepEqual([...out.subarray(0, 10)], [0xff, 0xd8, ...jfif]);
  assert.deepEqual([...out.subarray(10, 12)], [0xff, 0xe1]);
  assert.deepEqual([...out.subarray(out.length - rest.length)], rest);
});

test("half-to-even rounding as Python and OpenCV", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(C.roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
});

test("a picked file is sized from its first bytes and refused above 50 MP before any decoding", () => {
  const png = (w, h) => {
    const b = new Uint8Array(24);
    b.set([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82]);
    new DataView(b.buffer).setUint32(16, w);
    new DataView(b.buffer).setUint32(20, h);
    return b;
  };
  assert.deepEqual(C.imageSize(png(10000, 10000)), { type: "png", width: 10000, height: 10000 });
  assert.equal(C.checkPicked(C.imageSize(png(10000, 10000))), "too-large");
  assert.equal(C.checkPicked(C.imageSize(png(8000, 6250))), ""); // exactly 50 MP is allowed, as on the server
  assert.equal(C.checkPicked(C.imageSize(png(8000, 6251))), "too-large");
  assert.equal(C.checkPicked(C.imageSize(png(20, 20))), "too-small");
  const gif = new Uint8Array([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x40, 0x01, 0xf0, 0x00]);
  assert.deepEqual(C.imageSize(gif), { type: "gif", width: 320, height: 240 });
  const jpeg = file(Object.values(refs.orientation.cases)[0].jpeg);
  assert.deepEqual(C.imageSize(jpeg), { type: "jpeg", width: 7, height: 5 });
  assert.equal(C.imageSize(new TextEncoder().encode("not a picture at all")), null);
  assert.equal(C.checkPicked(null), "decodeError");
});

test("the models as sent unpack to the ONNX files the server checked, byte for byte", async () => {
  for (const [name, entry] of Object.entries(refs.packed_models)) {
    const packed = file(entry.file);
    const graph = C.unpackModel(packed);
    assert.ok(packed.length < 0.6 * graph.length, `${name}: ${packed.length} of ${graph.length} bytes`);
    assert.equal(await C.sha256Hex(graph), entry.graph_sha256, name);
    const broken = packed.slice();
    broken[12] ^= 1; // the segment count
    assert.throws(() => C.unpackModel(broken), /model-packing/);
    assert.throws(() => C.unpackModel(packed.subarray(0, packed.length - 1)), /model-packing/);
  }
});

test("float16 to float32 as NumPy converts, for every float16 but NaN", () => {
  const out = C.unpackModel(file(refs.halves.packed));
  assert.deepEqual(out, file(refs.halves.float32));
});
