// The page's face detector against OpenCV on the test portraits: every step bit for bit.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { refs, raw, rgbToRgba } from "./refs.mjs";
import * as H from "../../../bot/web/static/haar.js";

const frontal = H.parseCascade(fs.readFileSync(refs.cascades.frontal, "utf8"));
const profile = H.parseCascade(fs.readFileSync(refs.cascades.profile, "utf8"));
const key = (r) => (Array.isArray(r) ? r : [r.x, r.y, r.width, r.height]).join(",");

test("the cascade files parse into OpenCV's structure", () => {
  assert.equal(frontal.width, 20);
  assert.equal(frontal.stages.length, 20);
  assert.equal(profile.stages.length, 26);
  assert.ok(frontal.features.length > 1000);
  for (const stage of frontal.stages) assert.ok(stage.count > 0);
});

for (const [name, p] of Object.entries(refs.portraits)) {
  test(`${name}: grey, fitting and equalising match OpenCV exactly`, () => {
    const rgba = rgbToRgba(raw(p.rgb));
    const grey = H.rgbaToGrey(rgba, p.width, p.height);
    assert.deepEqual(grey, raw(p.grey));
    for (const [side, s] of Object.entries(p.scaled)) {
      const mine = H.scaledGrey(grey, p.width, p.height, Number(side));
      assert.equal(mine.w, s.width);
      assert.equal(mine.h, s.height);
      assert.deepEqual(mine.grey, raw(s.grey), `${side} px`);
    }
  });

  test(`${name}: the pyramid's bilinear resize matches cv2.INTER_LINEAR_EXACT exactly`, () => {
    for (const s of Object.values(p.scaled)) {
      for (const [size, entry] of Object.entries(s.linear)) {
        const [w, h] = size.split("x").map(Number);
        assert.deepEqual(H.resizeLinearExact(raw(s.grey), s.width, s.height, w, h), raw(entry), size);
      }
    }
  });

  test(`${name}: cascade candidates and grouped detections equal detectMultiScale's`, () => {
    for (const [side, s] of Object.entries(p.scaled)) {
      const cascade = side === "480" ? frontal : profile;
      const options = { scaleFactor: s.factor, minSize: s.min_face };
      const candidates = H.detectCandidates(cascade, raw(s.grey), s.width, s.height, options).map(key).sort();
      assert.deepEqual(candidates, s.candidates.map(key).sort(), `${side} px candidates`);
      const grouped = H.detectMultiScale(cascade, raw(s.grey), s.width, s.height, { ...options, minNeighbors: s.neighbours });
      assert.deepEqual(grouped.map(key).sort(), s.grouped.map(key).sort(), `${side} px grouped`);
    }
  });

  test(`${name}: detectFaces finds the server's faces`, () => {
    const faces = H.detectFaces(rgbToRgba(raw(p.rgb)), p.width, p.height, frontal, profile);
    assert.ok(p.faces.length >= 1);
    assert.deepEqual(faces.map(key), p.faces.map(key));
  });
}

test("groupRectangles drops small classes and boxes inside bigger ones", () => {
  const box = (x, y, s) => ({ x, y, width: s, height: s });
  const many = [box(10, 10, 40), box(11, 10, 40), box(10, 11, 40), box(12, 12, 40), box(200, 200, 30)];
  assert.deepEqual(H.groupRectangles(many, 2).map(key), ["11,11,40,40"]);
  const nested = [...Array(5)].map(() => box(100, 100, 100)).concat([...Array(3)].map(() => box(120, 120, 40)));
  assert.deepEqual(H.groupRectangles(nested, 2).map(key), ["100,100,100,100"]);
});
