// The development build: as the main entry point, but a trust file may name a development
// (simulated NSM) root — for the demo stack and tests. Never use it in production: with it, a
// document from any machine that holds that root's key passes.

import { Client, type ClientOptions, type WasmModule } from "./client.js";
import { loadWasm } from "./wasm.js";

export * from "./client.js";
export * from "./errors.js";
export * from "./storage.js";

/** The development build of the checks. */
export function wasm(): Promise<WasmModule> {
  return loadWasm("wasm-dev");
}

/** A client for `options.trust` that accepts a development root. */
export async function connect(options: ClientOptions): Promise<Client> {
  return Client.create(await wasm(), options);
}
