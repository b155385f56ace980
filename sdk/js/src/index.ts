// @arcane-aip/sdk — private LLM inference where the client checks, before every request,
// everything it is asked to trust: the log's signed checkpoint and witnesses, its consistency
// with the checkpoint saved last time, the gateway's OHTTP and token keys (each logged), and each
// candidate node's Nitro attestation against a logged release — by the Rust verifier compiled to
// WebAssembly. Only then is the request sealed to the verified nodes and sent through the relay.
//
// This entry point accepts only the AWS Nitro root. `@arcane-aip/sdk/development` also accepts a
// trust file's development (simulated NSM) root, for the demo stack.

import { Client, type ClientOptions, type WasmModule } from "./client.js";
import { loadWasm } from "./wasm.js";

export * from "./client.js";
export * from "./errors.js";
export * from "./storage.js";

/** The production build of the checks. */
export function wasm(): Promise<WasmModule> {
  return loadWasm("wasm");
}

/** A client for `options.trust` (production build: AWS Nitro root only). */
export async function connect(options: ClientOptions): Promise<Client> {
  return Client.create(await wasm(), options);
}
