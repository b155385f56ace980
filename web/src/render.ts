// Small DOM helpers: elements are built with text nodes only (nothing from the log is ever
// parsed as HTML).

export function el(tag: string, attributes: Record<string, string>, children: (Node | string)[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) if (value) node.setAttribute(name, value);
  for (const child of children) node.append(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

export function clear(node: HTMLElement) {
  node.replaceChildren();
}

export function short(hex: string): string {
  return hex.length > 16 ? hex.slice(0, 16) : hex;
}

export function hash(hex: string): string {
  return hex.length > 24 ? `${hex.slice(0, 12)}…${hex.slice(-8)}` : hex;
}

/** Seconds since the epoch, as UTC. */
export function time(seconds: number): string {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? String(seconds) : d.toISOString().replace(".000Z", "Z");
}
