// The client: I/O only. Every check, wire format and decision runs in the WebAssembly build of
// the Rust client (sdk/wasm); this file fetches what it asks for, stores what it says to keep,
// and hands the bytes back — in the Rust client's order, before every request.

import {
  ArcaneError,
  type Check,
  ServiceError,
  SplitViewError,
  TokenError,
  fromThrown,
  typed,
} from "./errors.js";
import type { Storage } from "./storage.js";

/** Largest checkpoint or consistency proof read from the log. */
const MAX_SMALL = 64 * 1024;
/** Largest key list read from the gateway. */
const MAX_KEY_LIST = 1 << 20;
/** Largest whole OHTTP answer read. */
const MAX_ANSWER = 4 << 20;

/** Storage keys. */
const CHECKPOINT = "checkpoint";
const WALLET = "wallet.json";
const RECEIPTS = "receipts.jsonl";

/** A request to send, as the WebAssembly side prepared it. */
interface Outgoing {
  readonly url: string;
  readonly contentType: string;
  readonly authorization?: string;
  readonly body: Uint8Array;
  readonly service: string;
  free(): void;
}

interface AnswerStreamHandle {
  push(bytes: Uint8Array, nowMs: number): string;
  end(broke: string | undefined, nowMs: number): string;
  free(): void;
}

/** The WebAssembly session (sdk/wasm's `Session`). */
export interface WasmSession {
  trust(): string;
  restoreCheckpoint(note: string): void;
  showCheckpoint(note: Uint8Array): void;
  viewStep(): string;
  viewProof(reply: Uint8Array): void;
  gatewayKeys(answer: Uint8Array, nowS: number): void;
  loadWallet(json: Uint8Array): void;
  walletJson(): Uint8Array;
  tokensOnHand(): number;
  refillStart(): Outgoing | undefined;
  refillAnswer(body: Uint8Array): Outgoing | undefined;
  poolSize(): number;
  nodesRequest(): Outgoing;
  nodesAnswer(body: Uint8Array): number;
  verifyCandidates(model: string | undefined, nowMs: number): number;
  report(): string;
  chatRequest(request: string, nowMs: number): Outgoing;
  takeAnswer(): AnswerStreamHandle | undefined;
  free(): void;
}

/** The verifier's primitives alone (sdk/wasm's `Vectors`), for published test vectors. */
export interface WasmVectors {
  verifyInclusion(index: number, size: number, leafHash: Uint8Array, proof: Uint8Array, root: Uint8Array): void;
  verifyConsistency(oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: Uint8Array): void;
  verifyNote(note: string, vkey: string): string;
  verifyToken(token: Uint8Array, spki: Uint8Array, challenge: Uint8Array): void;
  leafHash(data: Uint8Array): Uint8Array;
}

/** A loaded WebAssembly build. */
export interface WasmModule {
  Session: new (trust: string, files: string, candidates: number) => WasmSession;
  Vectors: WasmVectors;
}

/** How a client is set up. */
export interface ClientOptions {
  /** The trust file's text (TOML): the log's key, witnesses, publishers, service URLs. */
  trust: string;
  /** The text of the files the trust file names (`api_key_file`, …), by the name it uses. */
  files?: Record<string, string>;
  /** Where the saved checkpoint, the wallet and the receipts live. */
  storage: Storage;
  /** Verified candidate nodes each request names (default 2). */
  candidates?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** Longest wait for a service to answer, and between two pieces of a streamed answer (ms). */
  timeoutMs?: number;
}

/** A check that passed, and what it established. */
export interface Passed {
  check: Check;
  detail: string;
}

/** One answered request's receipt: hashes only, never the prompt or the answer. */
export interface Receipt {
  at_ms: number;
  model: string;
  log_origin: string;
  checkpoint_size: number;
  checkpoint_root: string;
  release_index: number;
  release_leaf_hash: string;
  model_sha256: string;
  document_sha256: string;
  rek_id: string;
  attested_at_ms: number;
  candidates: number;
  outcome: "answered" | "interrupted";
  completion_tokens: number;
  /** Every check the request passed before it was sealed, in order. */
  checks: Passed[];
  /** The node's signed statement about the answer (checked before the receipt was written). */
  signed_answer?: SignedAnswer;
}

/** What a node signs about an answer, inside the enclave (`spec/sealed.md` §5). */
export interface SignedAnswer {
  request_sha256: string;
  answer_sha256: string;
  model_sha256: string;
  release_leaf_hash: string;
  /** The node's attestation document, base64. */
  document: string;
  /** The proof bundle of the node's release entry (`c2sp.org/tlog-proof@v1` text). */
  release: string;
  /** Ed25519 over the statement, base64. */
  signature: string;
}

/** Token counts, as the node reported. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** How an answer ended. */
export interface Summary {
  usage?: Usage;
  finishReason?: string;
  receipt?: Receipt;
}

/** One chat message. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** An OpenAI-shaped chat request (the fields a node serves; others are refused). */
export interface ChatRequest {
  /** A model name; empty or absent: any model the verified nodes serve. */
  model?: string;
  messages: ChatMessage[];
  max_tokens?: number;
  /** 0..2; 0 is greedy decoding, absent the node's default for its model. */
  temperature?: number;
  /** Nucleus, (0, 1]; absent: the node's default. */
  top_p?: number;
  /** -2..2. */
  frequency_penalty?: number;
  /** -2..2. */
  presence_penalty?: number;
  /** At most 4 sequences, each 1 to 64 bytes, that end the answer where they would begin. */
  stop?: string | string[];
}

/** A relay the trust file lists, and what it needs. */
export interface RelaySummary {
  /** The relay resource requests are posted to. */
  url: string;
  /** Whether it admits a request only with a one-time token. */
  token: boolean;
  /** Whether it forwards chunked requests (streamed answers); chats go only through these. */
  chunked: boolean;
  /** Whether it also speaks HTTP/3 (used by the Rust SDK; `fetch` picks its own protocol). */
  http3: boolean;
}

/** Where the services are, as the trust file says. */
export interface TrustSummary {
  log: string;
  gateway: string;
  /** The relays, one picked at random per request. */
  relays: RelaySummary[];
  origin: string;
  development: boolean;
}

type AnswerEvent =
  | { delta: string }
  | { done: Summary }
  | { error: { kind: string; message: string; check?: Check }; receipt?: Receipt | null };

/** A verified, streaming answer: iterate for text deltas; `summary` resolves when it ends. */
export class Answer implements AsyncIterable<string> {
  /** The checks that passed before this request was sealed. */
  readonly report: Passed[];
  /** How it ended (resolves after the last delta; rejects when the answer fails). */
  readonly summary: Promise<Summary>;
  private readonly deltas: AsyncGenerator<string>;

  constructor(report: Passed[], run: (done: (s: Summary) => void) => AsyncGenerator<string>) {
    this.report = report;
    let resolve!: (s: Summary) => void;
    let reject!: (e: unknown) => void;
    this.summary = new Promise<Summary>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    // A failure surfaces in the iteration; the summary rejects too, without an unhandled
    // rejection when only one of them is awaited.
    this.summary.catch(() => {});
    const inner = run(resolve);
    this.deltas = (async function* () {
      try {
        yield* inner;
      } catch (e) {
        reject(e);
        throw e;
      }
    })();
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return this.deltas;
  }

  /** The whole text, once the answer has ended. */
  async text(): Promise<string> {
    let out = "";
    for await (const d of this) out += d;
    return out;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The arcane-aip client for one trust configuration. */
export class Client {
  private readonly session: WasmSession;
  private readonly storage: Storage;
  private readonly fetch: typeof globalThis.fetch;
  private readonly timeoutMs: number;
  /** Where the services are. */
  readonly trust: TrustSummary;
  private restored = false;
  /** One request's checks at a time: the session holds their state between calls. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(wasm: WasmModule, options: ClientOptions) {
    try {
      this.session = new wasm.Session(
        options.trust,
        JSON.stringify(options.files ?? {}),
        options.candidates ?? 2,
      );
    } catch (e) {
      throw fromThrown(e);
    }
    this.storage = options.storage;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.trust = JSON.parse(this.session.trust()) as TrustSummary;
    if (this.trust.development) {
      console.warn(
        "DEVELOPMENT MODE: node documents are checked against a development (simulated NSM) root, not AWS's",
      );
    }
  }

  /** A client over a loaded WebAssembly build (see `connect` in the package's entry points). */
  static async create(wasm: WasmModule, options: ClientOptions): Promise<Client> {
    const client = new Client(wasm, options);
    const wallet = await options.storage.get(WALLET);
    if (wallet) client.call(() => client.session.loadWallet(wallet));
    return client;
  }

  /** OTTs in the wallet. */
  get tokensOnHand(): number {
    return this.session.tokensOnHand();
  }

  /** Every pre-request check, in order, stopping at the first failure: what each established. */
  verify(model?: string): Promise<Passed[]> {
    return this.exclusive(() => this.preflight(model));
  }

  /**
   * A private chat: every check, then the request sealed to the verified nodes and sent through
   * the relay; the answer streams as it is opened and checked.
   */
  chat(request: ChatRequest): Promise<Answer> {
    return this.exclusive(async () => {
      const stop = typeof request.stop === "string" ? [request.stop] : request.stop;
      // Undefined fields are left out by JSON.stringify; the node checks every range.
      const body = JSON.stringify({
        model: request.model ?? "",
        messages: request.messages,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        frequency_penalty: request.frequency_penalty,
        presence_penalty: request.presence_penalty,
        stop,
      });
      const report = await this.preflight(request.model || undefined);
      const out = this.call(() => this.session.chatRequest(body, Date.now()));
      // The two OTTs it spends leave the wallet before they are used.
      await this.saveWallet();
      const stream = this.session.takeAnswer();
      if (!stream) throw new ArcaneError("answer", "no answer stream was prepared");
      let reply: Response;
      try {
        reply = await this.send(out, false);
      } catch (e) {
        stream.free();
        throw e;
      }
      return new Answer(report, (done) => this.read(reply, stream, done));
    });
  }

  /** Every receipt kept, oldest first. */
  async receipts(): Promise<Receipt[]> {
    const bytes = await this.storage.get(RECEIPTS);
    if (!bytes) return [];
    return decoder
      .decode(bytes)
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Receipt);
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => {});
    return run;
  }

  /** Runs a call into the WebAssembly side, turning what it throws into typed errors. */
  private call<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw fromThrown(e);
    }
  }

  private async preflight(model: string | undefined): Promise<Passed[]> {
    const s = this.session;
    if (!this.restored) {
      const saved = await this.storage.get(CHECKPOINT);
      if (saved) this.call(() => s.restoreCheckpoint(decoder.decode(saved)));
      this.restored = true;
    }
    // 1. The checkpoint: signature, witnesses, consistency with the saved one.
    const note = await this.get(`${this.trust.log}/checkpoint`, MAX_SMALL, "log");
    this.call(() => s.showCheckpoint(note));
    await this.settleView();
    // 2. The gateway's OHTTP and token keys, each with a proof.
    const keys = await this.get(`${this.trust.gateway}/v1/keys`, MAX_KEY_LIST, "gateway");
    this.call(() => s.gatewayKeys(keys, Date.now() / 1000));
    await this.settleView();
    // 3. Tokens for the hops ahead; a failed refill is fatal only when this request cannot be
    // paid for (two OTTs, one more when the node list must be fetched).
    try {
      let post = this.call(() => s.refillStart());
      while (post) {
        await this.saveWallet();
        const body = await this.whole(post);
        post = this.call(() => s.refillAnswer(body));
      }
    } catch (e) {
      if (s.tokensOnHand() < 2 + (s.poolSize() === 0 ? 1 : 0)) throw e;
    } finally {
      await this.saveWallet();
    }
    // 4. Candidate nodes, each bundle used at most once; stale ones make way for a fresh list
    // once.
    let fetched = false;
    if (s.poolSize() === 0) {
      await this.fetchNodes();
      fetched = true;
    }
    try {
      this.call(() => s.verifyCandidates(model, Date.now()));
    } catch (e) {
      if (fetched) throw e;
      await this.fetchNodes();
      this.call(() => s.verifyCandidates(model, Date.now()));
    }
    await this.settleView();
    return JSON.parse(s.report()) as Passed[];
  }

  private async fetchNodes(): Promise<void> {
    const out = this.call(() => this.session.nodesRequest());
    await this.saveWallet();
    const body = await this.whole(out);
    this.call(() => this.session.nodesAnswer(body));
  }

  /** Makes every checkpoint seen consistent with the view, asking the log for the proofs. */
  private async settleView(): Promise<void> {
    for (;;) {
      let step: { prove?: { path: string }; done?: boolean; save?: string | null };
      try {
        step = JSON.parse(this.session.viewStep());
      } catch (e) {
        throw await this.withEvidence(e);
      }
      if (step.prove) {
        const proof = await this.get(`${this.trust.log}${step.prove.path}`, MAX_SMALL, "log");
        try {
          this.session.viewProof(proof);
        } catch (e) {
          throw await this.withEvidence(e);
        }
        continue;
      }
      if (step.save) await this.storage.set(CHECKPOINT, encoder.encode(step.save));
      return;
    }
  }

  /** A split view's two notes are kept before the error is reported. */
  private async withEvidence(e: unknown): Promise<Error> {
    const error = fromThrown(e);
    if (!(error instanceof SplitViewError)) return error;
    const at = `evidence/${Date.now()}`;
    await this.storage.set(`${at}/saved.checkpoint`, encoder.encode(error.evidence.saved));
    await this.storage.set(`${at}/shown.checkpoint`, encoder.encode(error.evidence.shown));
    await this.storage.set(`${at}/reason.txt`, encoder.encode(error.evidence.reason + "\n"));
    return new SplitViewError(error.message, error.evidence, at);
  }

  private async saveWallet(): Promise<void> {
    await this.storage.set(WALLET, this.session.walletJson());
  }

  private async get(url: string, limit: number, service: string): Promise<Uint8Array> {
    const reply = await this.request(url, { method: "GET" }, service, this.timeoutSignal());
    const body = await readLimited(reply, limit, service);
    if (reply.status !== 200) {
      throw new ServiceError(
        "status",
        `${service} answered ${reply.status}: ${decoder.decode(body.slice(0, 300))}`,
        reply.status,
      );
    }
    return body;
  }

  private async request(url: string, init: RequestInit, service: string, signal?: AbortSignal): Promise<Response> {
    try {
      // A server-side redirect is not followed: the trust file names every service.
      return await this.fetch(url, { ...init, redirect: "error", signal });
    } catch (e) {
      throw new ServiceError("unreachable", `${service}: ${(e as Error).message}`);
    }
  }

  private timeoutSignal(): AbortSignal {
    return AbortSignal.timeout(this.timeoutMs);
  }

  /** Posts an encapsulated request; the reply once its status is 200. */
  private async send(out: Outgoing, whole: boolean): Promise<Response> {
    const headers: Record<string, string> = { "content-type": out.contentType };
    if (out.authorization) headers.authorization = out.authorization;
    const service = out.service;
    const url = out.url;
    const body = new Uint8Array(out.body);
    out.free();
    // A whole answer has `timeoutMs` in all; a streamed one, for its head and then between
    // any two pieces.
    const sent = this.request(url, { method: "POST", headers, body }, service,
      whole ? this.timeoutSignal() : undefined);
    const reply = await withTimeout(sent, this.timeoutMs);
    if (reply.status === 200) return reply;
    const text = decoder.decode((await readLimited(reply, 4096, service)).slice(0, 300));
    if (reply.status === 401 && service === "relay") {
      throw new TokenError("token-refused", `token refused by the relay: ${text}`);
    }
    throw new ServiceError("status", `${service} answered ${reply.status}: ${text}`, reply.status);
  }

  private async whole(out: Outgoing): Promise<Uint8Array> {
    const service = out.service;
    return readLimited(await this.send(out, true), MAX_ANSWER, service);
  }

  /** Feeds the relay's body to the answer stream as it arrives and yields its deltas. */
  private async *read(
    reply: Response,
    stream: AnswerStreamHandle,
    done: (s: Summary) => void,
  ): AsyncGenerator<string> {
    const reader = reply.body?.getReader();
    try {
      if (!reader) {
        yield* this.events(stream.end("the answer has no body", Date.now()), done);
        return;
      }
      for (;;) {
        let piece: ReadableStreamReadResult<Uint8Array>;
        try {
          piece = await withTimeout(reader.read(), this.timeoutMs);
        } catch (e) {
          await reader.cancel().catch(() => {});
          yield* this.events(stream.end((e as Error).message, Date.now()), done);
          return;
        }
        if (piece.done) {
          yield* this.events(stream.end(undefined, Date.now()), done);
          return;
        }
        if (yield* this.events(stream.push(piece.value, Date.now()), done)) {
          await reader.cancel().catch(() => {});
          return;
        }
      }
    } finally {
      stream.free();
    }
  }

  /** Yields the deltas of `json`'s events; true once the answer is over. */
  private async *events(json: string, done: (s: Summary) => void): AsyncGenerator<string, boolean> {
    for (const event of JSON.parse(json) as AnswerEvent[]) {
      if ("delta" in event) {
        yield event.delta;
      } else if ("done" in event) {
        if (event.done.receipt) await this.storage.append(RECEIPTS, JSON.stringify(event.done.receipt));
        done(event.done);
        return true;
      } else {
        if (event.receipt) await this.storage.append(RECEIPTS, JSON.stringify(event.receipt));
        throw typed(event.error as Parameters<typeof typed>[0]);
      }
    }
    return false;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`no data for ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Reads a whole body, refusing one larger than `limit` bytes as it arrives. */
async function readLimited(reply: Response, limit: number, service: string): Promise<Uint8Array> {
  const reader = reply.body?.getReader();
  if (!reader) return new Uint8Array();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > limit) {
        await reader.cancel();
        throw new ServiceError("unreachable", `${service}: the answer exceeds ${limit} bytes`);
      }
      parts.push(value);
    }
  } catch (e) {
    if (e instanceof ArcaneError) throw e;
    throw new ServiceError("unreachable", `${service}: ${(e as Error).message}`);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
