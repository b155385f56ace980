// Loads a WebAssembly build of the checks (dist/wasm or dist/wasm-dev) in Node.js or a browser.

import type { WasmModule } from "./client.js";

interface Glue extends WasmModule {
  default(input: { module_or_path: unknown }): Promise<unknown>;
  initSync(input: { module: unknown }): unknown;
}

const loaded = new Map<string, Promise<WasmModule>>();

/** The build in `folder` (beside this file), instantiated once per process or page. */
export function loadWasm(folder: "wasm" | "wasm-dev"): Promise<WasmModule> {
  let module = loaded.get(folder);
  if (!module) {
    module = instantiate(folder);
    loaded.set(folder, module);
  }
  return module;
}

async function instantiate(folder: string): Promise<WasmModule> {
  const glueUrl = new URL(`./${folder}/arcane_sdk_wasm.js`, import.meta.url);
  const wasmUrl = new URL(`./${folder}/arcane_sdk_wasm_bg.wasm`, import.meta.url);
  const glue = (await import(glueUrl.href)) as Glue;
  if (typeof process !== "undefined" && process.versions?.node) {
    const { readFile } = await import("node:fs/promises");
    glue.initSync({ module: await readFile(wasmUrl) });
  } else {
    await glue.default({ module_or_path: wasmUrl });
  }
  return glue;
}
