// Copies the onnxruntime-web files the page loads into the Python package, so that the page, the
// server and `speedmap export --format web` work offline. Run: npm ci --prefix web && npm run build --prefix web
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "node_modules", "onnxruntime-web", "dist");
const out = join(here, "..", "src", "speedmap", "web", "static", "vendor");
const files = [
  // WebAssembly backend (multithreaded when the page is cross-origin isolated)
  "ort.wasm.min.mjs",
  "ort-wasm-simd-threaded.mjs",
  "ort-wasm-simd-threaded.wasm",
  // WebGPU backend (and its WebAssembly fallback for operators WebGPU lacks)
  "ort.webgpu.min.mjs",
  "ort-wasm-simd-threaded.asyncify.mjs",
  "ort-wasm-simd-threaded.asyncify.wasm",
];
const version = JSON.parse(readFileSync(join(here, "node_modules", "onnxruntime-web", "package.json"), "utf8")).version;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const f of files) copyFileSync(join(dist, f), join(out, f));
writeFileSync(join(out, "manifest.json"), JSON.stringify({ "onnxruntime-web": version, license: "MIT", files }, null, 1) + "\n");
console.log(`copied onnxruntime-web ${version} (${files.length} files) to ${out}`);
