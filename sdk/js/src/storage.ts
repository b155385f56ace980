// Where a client keeps its state between runs: the saved checkpoint (what consistency is checked
// against), the wallet (it holds the TGT's secret) and the receipts, and split-view evidence.

/** A small key-value store of bytes. */
export interface Storage {
  get(key: string): Promise<Uint8Array | null>;
  /** Replaces the value whole (never half-written). */
  set(key: string, value: Uint8Array): Promise<void>;
  /** Appends one line (receipts). */
  append(key: string, line: string): Promise<void>;
}

/** State in memory only: gone with the process (tests, short-lived tools). */
export class MemoryStorage implements Storage {
  private readonly values = new Map<string, Uint8Array>();

  async get(key: string): Promise<Uint8Array | null> {
    return this.values.get(key)?.slice() ?? null;
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    this.values.set(key, value.slice());
  }

  async append(key: string, line: string): Promise<void> {
    const old = this.values.get(key) ?? new Uint8Array();
    const add = new TextEncoder().encode(line + "\n");
    const joined = new Uint8Array(old.length + add.length);
    joined.set(old);
    joined.set(add, old.length);
    this.values.set(key, joined);
  }
}

/** State in a folder (Node.js): each key a file, private to the user (0600), replaced by rename. */
export class FileStorage implements Storage {
  constructor(private readonly dir: string) {}

  private async path(key: string): Promise<string> {
    if (!/^[a-z0-9][a-z0-9._/-]*$/.test(key) || key.includes("..")) {
      throw new Error(`storage key ${JSON.stringify(key)} is not a plain name`);
    }
    const { join, dirname } = await import("node:path");
    const { mkdir } = await import("node:fs/promises");
    const path = join(this.dir, key);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    return path;
  }

  async get(key: string): Promise<Uint8Array | null> {
    const { readFile } = await import("node:fs/promises");
    try {
      return new Uint8Array(await readFile(await this.path(key)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    const { open, rename } = await import("node:fs/promises");
    const path = await this.path(key);
    const tmp = `${path}.tmp`;
    const file = await open(tmp, "w", 0o600);
    try {
      await file.writeFile(value);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  }

  async append(key: string, line: string): Promise<void> {
    const { appendFile } = await import("node:fs/promises");
    await appendFile(await this.path(key), line + "\n", { mode: 0o600 });
  }
}

/** State in a browser's `localStorage`, under a prefix (values base64). */
export class BrowserStorage implements Storage {
  constructor(private readonly prefix = "arcane-aip/") {}

  private get store(): globalThis.Storage {
    return globalThis.localStorage;
  }

  async get(key: string): Promise<Uint8Array | null> {
    const text = this.store.getItem(this.prefix + key);
    if (text === null) return null;
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    let binary = "";
    for (const b of value) binary += String.fromCharCode(b);
    this.store.setItem(this.prefix + key, btoa(binary));
  }

  async append(key: string, line: string): Promise<void> {
    const old = (await this.get(key)) ?? new Uint8Array();
    await this.set(key, new Uint8Array([...old, ...new TextEncoder().encode(line + "\n")]));
  }
}
