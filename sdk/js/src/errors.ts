// Typed errors. Every error the WebAssembly checks throw carries a kind and, for a refusal, the
// check that failed — the same names as the Rust SDK's `ClientError` and `Check`.

/** The checks run before every request, in order. */
export type Check =
  | "checkpoint"
  | "witnesses"
  | "consistency"
  | "ohttp-keys"
  | "token-keys"
  | "nodes";

/** What kind of failure: the Rust SDK's `ClientError` variants, kebab-cased. */
export type ErrorKind =
  | "refused"
  | "split-view"
  | "config"
  | "state"
  | "unreachable"
  | "status"
  | "token-refused"
  | "tokens-exhausted"
  | "answer"
  | "interrupted"
  | "node"
  | "verifier";

/** Both signed checkpoints of a split view, whole, and what differs. */
export interface SplitViewEvidence {
  reason: string;
  saved: string;
  shown: string;
}

/** Any failure of the SDK. `check` names the failed check of a refusal. */
export class ArcaneError extends Error {
  readonly kind: ErrorKind;
  readonly check?: Check;

  constructor(kind: ErrorKind, message: string, check?: Check) {
    super(message);
    this.name = "ArcaneError";
    this.kind = kind;
    this.check = check;
  }
}

/** A pre-request check failed: nothing was sent. */
export class RefusedError extends ArcaneError {
  constructor(message: string, check: Check) {
    super("refused", message, check);
    this.name = "RefusedError";
  }
}

/** The log showed a tree that does not extend the one this client saw before. */
export class SplitViewError extends ArcaneError {
  readonly evidence: SplitViewEvidence;
  /** Where the evidence was saved in the storage. */
  readonly savedAs: string;

  constructor(message: string, evidence: SplitViewEvidence, savedAs: string) {
    super("split-view", message, "consistency");
    this.name = "SplitViewError";
    this.evidence = evidence;
    this.savedAs = savedAs;
  }
}

/** A token was refused (spent, unknown key, limit reached) or none could be had. */
export class TokenError extends ArcaneError {
  constructor(kind: "token-refused" | "tokens-exhausted", message: string) {
    super(kind, message);
    this.name = "TokenError";
  }
}

/** A service answered with an error status, or could not be reached. */
export class ServiceError extends ArcaneError {
  readonly status?: number;

  constructor(kind: "status" | "unreachable", message: string, status?: number) {
    super(kind, message);
    this.name = "ServiceError";
    this.status = status;
  }
}

interface Thrown {
  kind: ErrorKind;
  message: string;
  check?: Check;
  evidence?: SplitViewEvidence;
}

/** The typed error for what the WebAssembly checks threw (a JSON string), or `e` itself. */
export function fromThrown(e: unknown, savedAs = ""): Error {
  if (typeof e !== "string") {
    return e instanceof Error ? e : new Error(String(e));
  }
  let t: Thrown;
  try {
    t = JSON.parse(e) as Thrown;
  } catch {
    return new Error(e);
  }
  return typed(t, savedAs);
}

/** The typed error for an error object of the answer stream. */
export function typed(t: Thrown, savedAs = ""): ArcaneError {
  switch (t.kind) {
    case "refused":
      return new RefusedError(t.message, t.check ?? "nodes");
    case "split-view":
      return new SplitViewError(
        t.message,
        t.evidence ?? { reason: t.message, saved: "", shown: "" },
        savedAs,
      );
    case "token-refused":
    case "tokens-exhausted":
      return new TokenError(t.kind, t.message);
    case "status":
    case "unreachable":
      return new ServiceError(t.kind, t.message);
    default:
      return new ArcaneError(t.kind, t.message, t.check);
  }
}
