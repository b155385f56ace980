// Verification time of the TypeScript SDK against a running stack (ARCANE_SDK_TRUST names its
// trust file): cold — the WebAssembly build instantiated and a first `verify()` with empty
// storage (every signature, proof and chain checked) — and warm — the median `verify()` after
// it. Prints one JSON line; cli/benches/sdk_js_bench.rs runs it beside the Rust client.

import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";

const path = process.env.ARCANE_SDK_TRUST;
if (!path) throw new Error("ARCANE_SDK_TRUST is not set");
const rounds = Number(process.env.ARCANE_BENCH_ROUNDS ?? 20);
const text = await readFile(path, "utf8");
const files = {};
for (const [, name] of text.matchAll(/^(?:api_key_file|development_nitro_root)\s*=\s*"(.*)"\s*$/gm)) {
  files[name] = await readFile(isAbsolute(name) ? name : join(dirname(path), name), "utf8");
}

const started = performance.now();
const sdk = await import("../dist/development.js");
await sdk.wasm();
const instantiated = performance.now();
const client = await sdk.connect({ trust: text, files, storage: new sdk.MemoryStorage() });
await client.verify();
const cold = performance.now();
const warm = [];
for (let i = 0; i < rounds; i++) {
  const t = performance.now();
  await client.verify();
  warm.push(performance.now() - t);
}
warm.sort((a, b) => a - b);
console.log(JSON.stringify({
  instantiate_ms: instantiated - started,
  cold_ms: cold - started,
  warm_ms: warm[Math.floor(warm.length / 2)],
}));
