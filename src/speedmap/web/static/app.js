// The page: drop an image or use the webcam, see boxes, labels and per-frame latency.
// URL parameters: backend=wasm|webgpu, threads=N, conf=0.25, iou=0.45.
// For tests and `speedmap bench browser`: window.speedmap.{ready, detect, bench}.
import { createDetector } from "./detector.js";

const params = new URLSearchParams(location.search);
const opts = {
  conf: Number(params.get("conf") ?? 0.25),
  iou: Number(params.get("iou") ?? 0.45),
  maxDet: Number(params.get("max_det") ?? 300),
};
const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");
const errors = [];
addEventListener("error", (e) => errors.push(String(e.message)));
addEventListener("unhandledrejection", (e) => errors.push(String(e.reason?.message ?? e.reason)));

const ready = createDetector({
  backend: params.get("backend") || "wasm",
  threads: Number(params.get("threads")) || undefined,
});
ready.then(
  (det) => {
    $("status").textContent =
      `${det.meta.name ?? ""}/${det.meta.version ?? ""} on ${det.backend}` +
      (det.threads ? ` (${det.threads} thread${det.threads > 1 ? "s" : ""})` : "") +
      `, session created in ${det.sessionCreateMs.toFixed(0)} ms` +
      (self.crossOriginIsolated ? "" : " — not cross-origin isolated: one thread");
    $("note").textContent = det.note;
    $("controls").hidden = false;
  },
  (err) => {
    errors.push(String(err?.message ?? err));
    $("status").textContent = `could not load the model: ${err?.message ?? err}`;
    $("status").className = "error";
  },
);

const colours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"];

function draw(source, result) {
  view.width = result.width;
  view.height = result.height;
  ctx.drawImage(source, 0, 0);
  const lw = Math.max(2, Math.round(Math.min(result.width, result.height) / 200));
  ctx.lineWidth = lw;
  ctx.font = `${6 * lw + 6}px sans-serif`;
  for (const d of result.detections) {
    const [x1, y1, x2, y2] = d.box;
    const colour = colours[d.classId % colours.length];
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${d.className} ${d.confidence.toFixed(2)}`;
    const th = 6 * lw + 10;
    const tw = ctx.measureText(label).width + 6;
    const ty = y1 >= th ? y1 - th : y1;
    ctx.fillStyle = colour;
    ctx.fillRect(x1, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x1 + 3, ty + th - 5);
  }
}

function showLatency(ms, stages, n) {
  const s = stages;
  $("latency").textContent =
    `${ms.toFixed(1)} ms per frame (decode ${s.decode.toFixed(1)}, letterbox ${s.preprocess.toFixed(1)}, ` +
    `model ${s.run.toFixed(1)}, NMS ${s.postprocess.toFixed(1)}) — ${n} object${n === 1 ? "" : "s"}`;
}

async function runOnFile(file) {
  const det = await ready;
  stopWebcam();
  const t = performance.now();
  const result = await det.detect(file, opts);
  const ms = performance.now() - t;
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  draw(bitmap, result);
  bitmap.close();
  showLatency(ms, result.stages, result.detections.length);
}

let stream = null;
async function startWebcam() {
  const det = await ready;
  const video = $("video");
  stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  video.srcObject = stream;
  await video.play();
  $("webcam").textContent = "Stop webcam";
  while (stream) {
    const t = performance.now();
    const result = await det.detect(video, opts);
    const ms = performance.now() - t;
    if (!stream) break;
    draw(video, result);
    showLatency(ms, result.stages, result.detections.length);
    await new Promise(requestAnimationFrame);
  }
}
function stopWebcam() {
  if (!stream) return;
  for (const track of stream.getTracks()) track.stop();
  stream = null;
  $("webcam").textContent = "Use webcam";
}

$("file").addEventListener("change", (e) => e.target.files[0] && runOnFile(e.target.files[0]));
$("webcam").addEventListener("click", () =>
  stream ? stopWebcam() : startWebcam().catch((err) => ($("note").textContent = `webcam: ${err.message}`)),
);
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/"));
  if (file) runOnFile(file);
});

// ---- automation: tests and `speedmap bench browser`

function fromBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes]);
}

/** Smallest nonzero step between successive performance.now() readings (ms), over ~50 ms. */
function timerResolution() {
  let best = Infinity;
  let prev = performance.now();
  const end = prev + 50;
  while (prev < end) {
    const t = performance.now();
    if (t > prev) {
      best = Math.min(best, t - prev);
      prev = t;
    }
  }
  return best;
}

async function pageLoadMs() {
  const nav = () => performance.getEntriesByType("navigation")[0];
  if (!nav() || !nav().loadEventEnd) await new Promise((r) => addEventListener("load", () => setTimeout(r), { once: true }));
  return nav().loadEventEnd - nav().startTime;
}

async function info(det) {
  return {
    backend: det.backend,
    requested_backend: det.requestedBackend,
    note: det.note,
    threads: det.threads,
    cross_origin_isolated: self.crossOriginIsolated,
    hardware_concurrency: navigator.hardwareConcurrency,
    user_agent: navigator.userAgent,
    onnxruntime_web: det.ortVersion,
    page_load_ms: await pageLoadMs(),
    model_fetch_ms: det.modelFetchMs,
    session_create_ms: det.sessionCreateMs,
    timer_resolution_ms: timerResolution(),
  };
}

/** Detections for base64-encoded images, with the given thresholds. */
async function detect(images, options = {}) {
  const det = await ready;
  const out = [];
  for (const b64 of images) out.push((await det.detect(fromBase64(b64), { ...opts, ...options })).detections);
  return out;
}

/**
 * Warm-up, then timed inferences one after another (at least `requests` and `duration` seconds), each
 * timed with performance.now() from the encoded image to the final detections (decode, letterbox,
 * model, NMS), cycling through `images` (base64).
 */
async function bench({ images, warmup = 10, requests = 100, duration = 0 }) {
  const det = await ready;
  const blobs = images.map(fromBase64);
  const warm = [];
  const w0 = performance.now();
  for (let i = 0; i < Math.max(1, warmup); i++) {
    const t = performance.now();
    await det.detect(blobs[i % blobs.length], opts);
    warm.push(performance.now() - t);
  }
  const warmupSeconds = (performance.now() - w0) / 1e3;
  const timings = [];
  const completions = [];
  const stages = { decode: [], preprocess: [], run: [], postprocess: [] };
  const start = performance.now();
  for (let i = 0; timings.length < requests || performance.now() - start < duration * 1e3; i++) {
    const t = performance.now();
    const r = await det.detect(blobs[i % blobs.length], opts);
    const now = performance.now();
    timings.push(now - t);
    completions.push(now - start);
    for (const k in stages) stages[k].push(r.stages[k]);
  }
  const elapsed = performance.now() - start;
  return {
    ...(await info(det)),
    warmup_ms: warm,
    warmup_seconds: warmupSeconds,
    timings_ms: timings,
    completions_ms: completions,
    duration_ms: elapsed,
    stages_ms: stages,
    errors,
  };
}

window.speedmap = { ready, detect, bench, errors, info: async () => info(await ready) };
