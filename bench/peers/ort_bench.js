// ort_bench.js: time an ONNX model in ONNX Runtime (npm's onnxruntime-node),
// a peer for bench/transformer.py. Benchmark-only: q8c never links or loads
// ONNX Runtime.
//
//   node ort_bench.js MODEL.onnx RUNS WARMUP NAME=FILE.npy...
//
// Loads the model with one intra-op and one inter-op thread and every graph
// optimization on (what ORT's users get by default, on one core), feeds the
// .npy inputs (f32, i32 or i64, C order), runs WARMUP untimed runs, then RUNS
// timed ones, and prints one JSON line: {"times_ms": [...]} with each run's
// wall time. Its module search path is NODE_PATH (the bench installs
// onnxruntime-node under build/peers).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

// The .npy reader: version 1/2 header, little-endian f4/i4/i8, C order.
function readNpy(path) {
  const buf = fs.readFileSync(path);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + hlen;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1]
    .split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const bytes = buf.subarray(start);
  const copy = (T) => new T(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const table = {
    '<f4': ['float32', () => copy(Float32Array)],
    '<i4': ['int32', () => copy(Int32Array)],
    '<i8': ['int64', () => copy(BigInt64Array)],
  };
  if (!table[descr]) throw new Error(`${path}: dtype ${descr} is not f4, i4 or i8`);
  const [type, data] = table[descr];
  return new ort.Tensor(type, data(), shape);
}

async function main() {
  const [model, runsArg, warmupArg, ...inputs] = process.argv.slice(2);
  const feeds = {};
  for (const spec of inputs) {
    const eq = spec.indexOf('=');
    feeds[spec.slice(0, eq)] = readNpy(spec.slice(eq + 1));
  }
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  for (let i = 0; i < Number(warmupArg); i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < Number(runsArg); i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  console.log(JSON.stringify({ times_ms: times }));
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message}`);
  process.exit(1);
});
