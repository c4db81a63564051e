// Darkroom's service worker: keeps the page, its runtime and its models on this device, so the
// page opens and styles offline after the first visit. It only ever stores what the server
// serves to everyone (listed with SHA-256 in styles.json); never a photo: the page sends none.

const CACHE = "darkroom-page";

async function precache() {
  const response = await fetch("styles.json", { cache: "no-cache" });
  const document = await response.clone().json();
  const cache = await caches.open(CACHE);
  await cache.put("styles.json", response);
  const wanted = ["./", ...Object.keys(document.files).filter((name) => name !== "styles.json" && name !== "sw.js")];
  const kept = new Set((await cache.keys()).map((request) => request.url));
  await Promise.all(wanted.map(async (name) => {
    const url = new URL(name, self.registration.scope).href;
    if (name.includes("?v=") && kept.has(url)) return; // a model already kept: its URL names its version
    // versioned files come from the browser's cache (the page has just loaded them); the rest is checked
    const versioned = name.includes("?v=") || name.startsWith("vendor/");
    await cache.add(new Request(url, { cache: versioned ? "default" : "no-cache" }));
  }));
  // what a newer release no longer lists goes
  const current = new Set([...wanted, "styles.json"].map((name) => new URL(name, self.registration.scope).href));
  for (const request of await cache.keys()) if (!current.has(request.url)) await cache.delete(request);
}

self.addEventListener("install", (event) => { event.waitUntil(precache().then(() => self.skipWaiting())); });
self.addEventListener("activate", (event) => { event.waitUntil(self.clients.claim()); });

// The page and its own files: the network first (a new release shows at once), the kept copy
// when offline. Models and the runtime carry their version in their URL: the kept copy first.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !url.pathname.startsWith(new URL(self.registration.scope).pathname)) return;
  if (url.pathname.endsWith("/sw.js")) return;
  const immutable = url.search.includes("v=") || url.pathname.includes("/vendor/");
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    if (immutable) {
      const kept = await cache.match(request, { ignoreVary: true });
      if (kept) return kept;
    }
    try {
      const response = await fetch(request);
      if (response.ok) await cache.put(request, response.clone());
      return response;
    } catch (error) {
      const kept = await cache.match(request, { ignoreVary: true, ignoreSearch: request.mode === "navigate" });
      if (kept) return kept;
      throw error;
    }
  })());
});
