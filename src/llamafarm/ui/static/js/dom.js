// Small DOM helpers: elements are built with h(), never from HTML strings (no innerHTML), so
// nothing the server sends is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i && v < 10 ? 1 : 0)} ${units[i]}`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

let uid = 0;
export function id(prefix = "f") { uid += 1; return `${prefix}-${uid}`; }

// A labelled control: <div class=field><label for=…>text</label>control</div>
export function field(text, control, hint) {
  if (!control.id) control.id = id();
  return h("div", { class: "field" }, h("label", { for: control.id }, text), control,
    hint ? h("small", { class: "muted" }, hint) : null);
}

export function select(options, value) {
  const el = h("select");
  for (const opt of options) {
    const [v, text] = Array.isArray(opt) ? opt : [opt, opt];
    el.append(h("option", { value: v, selected: v === value }, text));
  }
  return el;
}

// An error box showing the server's detail; role=alert so screen readers hear it.
export function errorBox(error) {
  return h("div", { class: "error", role: "alert" }, error && error.detail ? error.detail : String(error));
}

export function status(el, content, kind = "") {
  clear(el, content);
  el.className = `status ${kind}`;
}

export function progress(value, max, label) {
  const bar = h("progress", { max: max || 1, "aria-label": label || "progress" });
  if (value !== null && value !== undefined) bar.value = value;
  return bar;
}

const confirmDialog = () => document.getElementById("confirm-dialog");

// A modal yes/no question (keyboard: Tab, Enter, Escape); resolves true for yes.
export function confirm(text, yes = "Delete") {
  const dialog = confirmDialog();
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

const STOPWORDS = new Set(["the", "and", "for", "are", "was", "were", "what", "which", "who", "how",
  "does", "did", "with", "that", "this", "from", "into", "about", "have", "has", "not", "you", "your"]);

// Text with each of the query's words (whole words, a plural too; not "the", "what"…) marked.
export function highlighted(text, query) {
  const words = [...new Set(String(query || "").toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [])]
    .filter((w) => !STOPWORDS.has(w));
  if (!words.length) return [text];
  const alternatives = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])((?:${alternatives})s?)(?![\\p{L}\\p{N}])`, "giu");
  return String(text).split(pattern).map((part, i) => (i % 2 ? h("mark", {}, part) : part));
}
