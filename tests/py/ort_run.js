// ort_run.js: run a one-input ONNX model in ONNX Runtime (npm's
// onnxruntime-node), for tests/py/test_onnx_dynamic.py's optional comparison.
// Test-only: q8c never links or loads ONNX Runtime.
//
//   node ort_run.js MODEL.onnx LEVEL X.f32 ROWS COLS OUT.f32
//
// X.f32 holds the input `x` [ROWS, COLS] as raw little-endian f32; the first
// output is written to OUT.f32 the same way. LEVEL is ORT's
// graphOptimizationLevel ('disabled': the graph's own ops; 'all': its fused
// DynamicQuantizeMatMul kernels). NODE_PATH finds onnxruntime-node.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');
async function main() {
  const [model, level, xpath, rows, cols, out] = process.argv.slice(2);
  const buf = fs.readFileSync(xpath);
  const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: 1, interOpNumThreads: 1,
    graphOptimizationLevel: level});
  const r = await s.run({x: new ort.Tensor('float32', x, [Number(rows), Number(cols)])});
  const y = r[s.outputNames[0]].data;
  fs.writeFileSync(out, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}
main().catch((e) => { console.error(e.message); process.exit(1); });
