// Finishes a built site the way cargo-leptos does with `hash-files = true` and `--precompress`:
// content hashes in the /pkg names (MD5, base64url, as cargo-leptos computes them), the hash list
// the server reads beside its binary, and a .br and a .gz beside every file.
//
//   node scripts/site-files.mjs SITE_DIR OUTPUT_NAME HASH_FILE
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const [site, name, hashFile] = process.argv.slice(2);
if (!site || !name || !hashFile) {
  console.error("usage: node scripts/site-files.mjs SITE_DIR OUTPUT_NAME HASH_FILE");
  process.exit(2);
}

const pkg = path.join(site, "pkg");
const lines = [];
for (const ext of ["js", "wasm", "css"]) {
  const file = path.join(pkg, `${name}.${ext}`);
  const hash = crypto.createHash("md5").update(fs.readFileSync(file)).digest("base64url");
  fs.renameSync(file, path.join(pkg, `${name}.${hash}.${ext}`));
  lines.push(`${ext}: ${hash}\n`);
}
fs.mkdirSync(path.dirname(hashFile), { recursive: true });
fs.writeFileSync(hashFile, lines.join(""));

function* files(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else if (!/\.(br|gz)$/.test(entry.name)) yield full;
  }
}
let raw = 0, br = 0, gz = 0;
for (const file of files(site)) {
  const data = fs.readFileSync(file);
  const b = zlib.brotliCompressSync(data, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
  const g = zlib.gzipSync(data, { level: 9 });
  fs.writeFileSync(`${file}.br`, b);
  fs.writeFileSync(`${file}.gz`, g);
  raw += data.length; br += b.length; gz += g.length;
}
console.log(`site: ${raw} bytes raw, ${gz} gzip, ${br} brotli`);
