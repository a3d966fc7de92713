// speedmap's detector in the browser: the same letterbox, decode and NMS as the Python engine
// (speedmap.preprocess, speedmap.engine, speedmap.postprocess), on onnxruntime-web.

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed-point resampling precision (Resample.c)
const MAX_CANDIDATES = 3000; // speedmap.postprocess.MAX_CANDIDATES

/** Python's round(): half to even. */
export function pyRound(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// Pillow's precompute_coeffs for the bilinear (triangle) filter, normalised to fixed point.
function coeffs(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      k[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0.0 ? k[x] / ww : k[x];
      const v = w * (1 << PRECISION_BITS);
      kk[xx * ksize + x] = Math.trunc(w < 0 ? v - 0.5 : v + 0.5);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, kk, bounds };
}

function clip8(v) {
  if (v >= 1 << (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/**
 * Resize RGBA pixels to RGB with Pillow's BILINEAR filter, bit for bit (Image.resize: a horizontal
 * pass over the rows the vertical pass needs, then a vertical pass, each rounded to uint8).
 */
export function resizeBilinear(rgba, w, h, nw, nh) {
  const needH = nw !== w;
  const needV = nh !== h;
  const hc = coeffs(w, nw);
  const vc = coeffs(h, nh);
  let src = rgba;
  let stride = 4; // channels per pixel of src
  let sw = w;
  let rowOffset = 0;
  let rows = h;
  if (needH) {
    const first = vc.bounds[0];
    const last = vc.bounds[nh * 2 - 2] + vc.bounds[nh * 2 - 1];
    rows = last - first;
    const tmp = new Uint8Array(nw * rows * 3);
    for (let y = 0; y < rows; y++) {
      const srow = (y + first) * w * 4;
      for (let xx = 0; xx < nw; xx++) {
        const xmin = hc.bounds[xx * 2];
        const xmax = hc.bounds[xx * 2 + 1];
        const kb = xx * hc.ksize;
        let s0 = 1 << (PRECISION_BITS - 1);
        let s1 = s0;
        let s2 = s0;
        for (let x = 0; x < xmax; x++) {
          const c = hc.kk[kb + x];
          const p = srow + (x + xmin) * 4;
          s0 += rgba[p] * c;
          s1 += rgba[p + 1] * c;
          s2 += rgba[p + 2] * c;
        }
        const o = (y * nw + xx) * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp;
    stride = 3;
    sw = nw;
    rowOffset = first;
  }
  const out = new Uint8Array(nw * nh * 3);
  if (!needV) {
    for (let i = 0, j = 0; i < nw * nh; i++, j += stride) {
      out[i * 3] = src[j];
      out[i * 3 + 1] = src[j + 1];
      out[i * 3 + 2] = src[j + 2];
    }
    return out;
  }
  for (let yy = 0; yy < nh; yy++) {
    const ymin = vc.bounds[yy * 2] - rowOffset;
    const ymax = vc.bounds[yy * 2 + 1];
    const kb = yy * vc.ksize;
    for (let xx = 0; xx < sw; xx++) {
      let s0 = 1 << (PRECISION_BITS - 1);
      let s1 = s0;
      let s2 = s0;
      for (let y = 0; y < ymax; y++) {
        const c = vc.kk[kb + y];
        const p = ((y + ymin) * sw + xx) * stride;
        s0 += src[p] * c;
        s1 += src[p + 1] * c;
        s2 += src[p + 2] * c;
      }
      const o = (yy * nw + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/**
 * speedmap.preprocess.letterbox + to_input: fit into size x size keeping the aspect ratio, centre on
 * 114 grey, RGB float32 NCHW in [0, 1]. Returns the input and the mapping back.
 */
export function letterbox(rgba, w, h, size) {
  const scale = Math.min(size / h, size / w);
  const nw = Math.max(1, pyRound(w * scale));
  const nh = Math.max(1, pyRound(h * scale));
  const rgb = resizeBilinear(rgba, w, h, nw, nh);
  const left = Math.floor((size - nw) / 2);
  const top = Math.floor((size - nh) / 2);
  const plane = size * size;
  const data = new Float32Array(3 * plane).fill(114 / 255);
  for (let y = 0; y < nh; y++) {
    for (let x = 0; x < nw; x++) {
      const i = (y * nw + x) * 3;
      const o = (y + top) * size + x + left;
      data[o] = rgb[i] / 255;
      data[o + plane] = rgb[i + 1] / 255;
      data[o + 2 * plane] = rgb[i + 2] / 255;
    }
  }
  return { data, scale, left, top, width: w, height: h };
}

/** speedmap.postprocess.postprocess on one image's (N, 4 + nc) output, boxes mapped back like Letterbox.to_original. */
export function postprocess(pred, n, stride, box, { conf = 0.25, iou = 0.45, maxDet = 300, agnostic = false } = {}) {
  let cand = [];
  for (let i = 0; i < n; i++) {
    const row = i * stride;
    let cls = 0;
    let best = pred[row + 4];
    for (let c = 1; c < stride - 4; c++) {
      if (pred[row + 4 + c] > best) {
        best = pred[row + 4 + c];
        cls = c;
      }
    }
    if (best >= conf) cand.push({ i, score: best, cls });
  }
  cand.sort((a, b) => b.score - a.score || a.i - b.i); // stable: by score, then cell
  if (cand.length > MAX_CANDIDATES) cand = cand.slice(0, MAX_CANDIDATES);
  const coords = (i) => pred.subarray(i * stride, i * stride + 4);
  const area = (b) => Math.max(b[2] - b[0], 0) * Math.max(b[3] - b[1], 0);
  const suppressed = new Uint8Array(cand.length);
  const kept = [];
  for (let a = 0; a < cand.length && kept.length < maxDet; a++) {
    if (suppressed[a]) continue;
    kept.push(cand[a]);
    const ba = coords(cand[a].i);
    const aa = area(ba);
    for (let b = a + 1; b < cand.length; b++) {
      if (suppressed[b] || (!agnostic && cand[b].cls !== cand[a].cls)) continue;
      const bb = coords(cand[b].i);
      const iw = Math.max(Math.min(ba[2], bb[2]) - Math.max(ba[0], bb[0]), 0);
      const ih = Math.max(Math.min(ba[3], bb[3]) - Math.max(ba[1], bb[1]), 0);
      const inter = iw * ih;
      const union = aa + area(bb) - inter;
      if (union > 0 && inter / union > iou) suppressed[b] = 1;
    }
  }
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
  return kept.map(({ i, score, cls }) => {
    const b = coords(i);
    return {
      box: [
        clip((b[0] - box.left) / box.scale, box.width),
        clip((b[1] - box.top) / box.scale, box.height),
        clip((b[2] - box.left) / box.scale, box.width),
        clip((b[3] - box.top) / box.scale, box.height),
      ],
      confidence: score,
      classId: cls,
    };
  });
}

function toHalf(f32) {
  // float32 -> IEEE half (round to nearest even), for fp16 models
  const out = new Uint16Array(f32.length);
  const view = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < f32.length; i++) {
    view.setFloat32(0, f32[i]);
    const x = view.getUint32(0);
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 127 + 15;
    let mant = x & 0x7fffff;
    if (exp <= 0) {
      out[i] = sign; // inputs are in [0, 1]: subnormal halves are below any pixel step
    } else {
      let h = sign | (exp << 10) | (mant >> 13);
      mant &= 0x1fff;
      if (mant > 0x1000 || (mant === 0x1000 && h & 1)) h += 1;
      out[i] = h;
    }
  }
  return out;
}

/** RGBA pixels of an image source: a Blob (decoded with EXIF orientation, no colour conversion), an
 * ImageBitmap, a video frame, a canvas or an image element. */
export async function pixels(source) {
  let bitmap = source;
  let owned = false;
  if (source instanceof Blob) {
    bitmap = await createImageBitmap(source, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
      imageOrientation: "from-image",
    });
    owned = true;
  }
  const w = bitmap.videoWidth || bitmap.naturalWidth || bitmap.width;
  const h = bitmap.videoHeight || bitmap.naturalHeight || bitmap.height;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
  ctx.drawImage(bitmap, 0, 0);
  if (owned) bitmap.close();
  return { rgba: ctx.getImageData(0, 0, w, h).data, width: w, height: h };
}

/**
 * Load onnxruntime-web and the model from `base` (the bundle folder: model.json, model.onnx, vendor/).
 * backend: "wasm" (default) or "webgpu" (falls back to wasm, with `note`, when the browser lacks it).
 */
export async function createDetector({ base = new URL("./", document.baseURI), backend = "wasm", threads } = {}) {
  let note = "";
  let used = backend === "webgpu" ? "webgpu" : "wasm";
  if (used === "webgpu") {
    const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
    if (!adapter) {
      used = "wasm";
      note = "WebGPU is not available in this browser: running on WebAssembly";
    }
  }
  const vendor = new URL("vendor/", base);
  const ort = await import(new URL(used === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs", vendor).href);
  const numThreads = threads || (self.crossOriginIsolated ? navigator.hardwareConcurrency || 1 : 1);
  ort.env.wasm.wasmPaths = vendor.href;
  ort.env.wasm.numThreads = numThreads;
  ort.env.logLevel = "error";

  const t0 = performance.now();
  const metaResp = await fetch(new URL("model.json", base));
  if (!metaResp.ok) throw new Error(`model.json: HTTP ${metaResp.status}`);
  const meta = await metaResp.json();
  const modelResp = await fetch(new URL(meta.file || "model.onnx", base));
  if (!modelResp.ok) throw new Error(`${meta.file || "model.onnx"}: HTTP ${modelResp.status}`);
  const bytes = new Uint8Array(await modelResp.arrayBuffer());
  const t1 = performance.now();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [used],
    graphOptimizationLevel: "all",
  });
  const t2 = performance.now();

  const size = meta.input.imgsz;
  const half = meta.input.dtype === "float16";
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const classes = meta.classes;

  /** Detections on one image source; `stages` holds the milliseconds of each step. */
  async function detect(source, opts = {}) {
    const a = performance.now();
    const { rgba, width, height } = await pixels(source);
    const b = performance.now();
    const lb = letterbox(rgba, width, height, size);
    const input = half
      ? new ort.Tensor("float16", toHalf(lb.data), [1, 3, size, size])
      : new ort.Tensor("float32", lb.data, [1, 3, size, size]);
    const c = performance.now();
    const result = await session.run({ [inputName]: input });
    const out = result[outputName];
    let pred = out.data;
    if (!(pred instanceof Float32Array)) pred = Float32Array.from(pred, Number);
    const d = performance.now();
    const [, n, stride] = out.dims;
    const dets = postprocess(pred, n, stride, lb, opts).map((x) => ({ ...x, className: classes[x.classId] }));
    input.dispose?.();
    out.dispose?.();
    const e = performance.now();
    return { detections: dets, width, height, stages: { decode: b - a, preprocess: c - b, run: d - c, postprocess: e - d } };
  }

  return {
    detect,
    meta,
    classes,
    backend: used,
    requestedBackend: backend,
    note,
    threads: used === "wasm" ? numThreads : null,
    ortVersion: ort.env.versions?.web || ort.env.versions?.common || "",
    modelFetchMs: t1 - t0,
    sessionCreateMs: t2 - t1,
  };
}
