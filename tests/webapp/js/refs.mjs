// Shared loader for the reference data Python wrote (tests/webapp/references.py).
import fs from "node:fs";
import path from "node:path";

export const DIR = process.env.DARKROOM_WEBAPP_REFS;
if (!DIR) throw new Error("DARKROOM_WEBAPP_REFS is not set: run these through pytest tests/webapp/test_js_units.py");
export const refs = JSON.parse(fs.readFileSync(path.join(DIR, "refs.json"), "utf8"));
export const raw = (entry) => new Uint8Array(fs.readFileSync(path.join(DIR, entry.file)));
export const file = (name) => new Uint8Array(fs.readFileSync(path.join(DIR, name)));

export function rgbToRgba(rgb) {
  const rgba = new Uint8ClampedArray((rgb.length / 3) * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgba[j] = rgb[i]; rgba[j + 1] = rgb[i + 1]; rgba[j + 2] = rgb[i + 2]; rgba[j + 3] = 255;
  }
  return rgba;
}

export function compareRgb(rgba, rgb) {
  let max = 0, se = 0;
  for (let p = 0, i = 0; i < rgb.length; p += 4, i += 3) {
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(rgba[p + c] - rgb[i + c]);
      max = Math.max(max, d); se += d * d;
    }
  }
  const mse = se / rgb.length;
  return { max, psnr: mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse) };
}
