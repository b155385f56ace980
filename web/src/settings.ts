// What the user configured (log URL, log key, witnesses, publishers) and what this browser keeps:
// the settings, and per log key the last checkpoint seen and the sizes seen. A fragment
// (`#log=…&key=…&witness=…&threshold=…&publisher=…`, never sent to any server) fills the form.

export interface Settings {
  log: string;
  key: string;
  witnesses: string[];
  threshold: number;
  publishers: string[];
}

const PREFIX = "arcane-verification-center:";

/** localStorage under this page's prefix; a browser that refuses storage keeps nothing. */
export const storage = {
  get(key: string): string | null {
    try {
      return localStorage.getItem(PREFIX + key);
    } catch {
      return null;
    }
  },
  set(key: string, value: string) {
    try {
      localStorage.setItem(PREFIX + key, value);
    } catch {
      // Private mode or full: the page still verifies, it only forgets.
    }
  },
};

export function settingsFromFragment(fragment: string): Settings | null {
  const params = new URLSearchParams(fragment.replace(/^#/, ""));
  const log = params.get("log");
  const key = params.get("key");
  if (!log || !key) return null;
  return {
    log,
    key,
    witnesses: params.getAll("witness"),
    threshold: Number(params.get("threshold") ?? 0) || 0,
    publishers: params.getAll("publisher"),
  };
}

export function readSettings(): Settings | null {
  const text = storage.get("settings");
  if (!text) return null;
  try {
    return JSON.parse(text) as Settings;
  } catch {
    return null;
  }
}

export function writeSettings(settings: Settings) {
  storage.set("settings", JSON.stringify(settings));
}
