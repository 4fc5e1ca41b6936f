// Checks a running server the way a first visit uses it: the page names content-hashed /pkg
// files, each is served (precompressed when a .br exists) with year-long immutable caching, and
// the page hydrates in chromium (the layout sets data-hydrated="true" once the WASM runs).
//
//   node scripts/check-site.mjs BASE_URL [--precompressed]
import { createRequire } from "node:module";
import path from "node:path";

const [base, flag] = process.argv.slice(2);
const expectPrecompressed = flag === "--precompressed";
const failures = [];
const fail = (message) => failures.push(message);

const page = await fetch(`${base}/login`);
const html = await page.text();
if (page.status !== 200) fail(`/login answered ${page.status}`);
const names = [...new Set(html.match(/\/pkg\/[A-Za-z0-9_.\-/]+\.(?:js|wasm|css)/g) ?? [])];
for (const ext of ["js", "wasm", "css"]) {
  if (!names.some((n) => new RegExp(`\\.[A-Za-z0-9_-]{22}\\.${ext}$`).test(n))) {
    fail(`the page names no content-hashed .${ext} file: ${names.join(", ")}`);
  }
}
for (const name of names) {
  // What browsers ask for; fetch decodes, and the headers still tell what was sent.
  const r = await fetch(`${base}${name}`, { headers: { "accept-encoding": "gzip, deflate, br" } });
  const body = Buffer.from(await r.arrayBuffer());
  const encoding = r.headers.get("content-encoding") ?? "identity";
  console.log(`${name}: ${r.status}, ${body.length} bytes, sent as ${encoding}, ${r.headers.get("cache-control")}`);
  if (r.status !== 200) fail(`${name}: ${r.status}`);
  if (r.headers.get("cache-control") !== "public, max-age=31536000, immutable") {
    fail(`${name}: cache-control ${r.headers.get("cache-control")}`);
  }
  if (expectPrecompressed && encoding !== "br") fail(`${name}: sent as ${encoding}, not br`);
}

// Playwright comes with the end-to-end suite's packages (end2end/node_modules).
const require = createRequire(path.resolve("end2end/package.json"));
const { chromium } = require("@playwright/test");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const tab = await browser.newPage();
  const errors = [];
  tab.on("pageerror", (e) => errors.push(String(e)));
  // A WASM panic or a hydration mismatch; not, say, a missing favicon.
  tab.on("console", (m) => {
    if (m.type() === "error" && /panicked|hydrat|RuntimeError|unreachable/i.test(m.text())) errors.push(m.text());
  });
  const sent = new Map();
  tab.on("response", async (r) => {
    if (new URL(r.url()).pathname.startsWith("/pkg/")) {
      sent.set(new URL(r.url()).pathname, (await r.allHeaders())["content-encoding"] ?? "identity");
    }
  });
  const started = Date.now();
  await tab.goto(`${base}/login`);
  try {
    await tab.waitForSelector('[data-hydrated="true"]', { timeout: 20_000 });
    console.log(`/login hydrated ${Date.now() - started} ms after navigation`);
  } catch {
    fail("/login did not hydrate within 20 s");
  }
  if (errors.length) fail(`browser errors: ${errors.join(" | ")}`);
  for (const [name, encoding] of sent) {
    console.log(`chromium got ${name} as ${encoding}`);
    if (expectPrecompressed && encoding !== "br") fail(`chromium got ${name} as ${encoding}, not br`);
  }
  if (!["js", "wasm"].every((ext) => [...sent.keys()].some((n) => n.endsWith(`.${ext}`)))) {
    fail(`chromium did not load the bundle: ${[...sent.keys()].join(", ")}`);
  }
} finally {
  await browser.close();
}

if (failures.length) {
  for (const f of failures) console.error(`FAIL ${f}`);
  process.exit(1);
}
console.log("site check passed");
