// Lighthouse (npm lighthouse@12.2.3 in the git-ignored .node/) on the page as a person uses it,
// mobile, with Debian's Chromium: the load, then a timespan of picking a photo, waiting for the
// tiles and tapping a style. Prints each step's category scores and layout shift.
//
//   npm install --prefix .node --no-save lighthouse@12.2.3
//   node bench/lighthouse_flow.mjs http://127.0.0.1:8080/app/ photo.jpg
import puppeteer from "../.node/node_modules/puppeteer-core/lib/esm/puppeteer/puppeteer-core.js";
import { startFlow } from "../.node/node_modules/lighthouse/core/index.js";

const [url, photo] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROME_PATH || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu"],
});
const page = await browser.newPage();
const flow = await startFlow(page, { config: { extends: "lighthouse:default", settings: { formFactor: "mobile" } } });
await flow.navigate(url, { name: "load" });
await page.waitForSelector("body:not([data-state=loading])", { timeout: 120000 });
await flow.startTimespan({ name: "pick a photo and tap a style" });
const input = await page.$("#photo");
await input.uploadFile(photo);
await page.waitForSelector("body[data-tiles=done]", { timeout: 180000 });
await page.click(".tile[data-style=ink]");
await page.waitForSelector("body[data-state=done]", { timeout: 180000 });
await flow.endTimespan();
const result = await flow.createFlowResult();
for (const step of result.steps) {
  const scores = Object.fromEntries(Object.entries(step.lhr.categories).map(([k, v]) => [k, v.score === null ? null : Math.round(v.score * 100)]));
  const cls = step.lhr.audits["cumulative-layout-shift"];
  console.log(`${step.name}: ${JSON.stringify(scores)} CLS ${cls ? cls.numericValue.toFixed(3) : "n/a"}`);
}
await browser.close();
