// Config: llamafarm.yaml in a text editor; YAML syntax checked here, the config checked by the
// server (config/validate) before saving, each error shown at its path and line; save; undo
// to the previous version (the .bak, from config/previous).
import { api, get, projectPath } from "../api.js";
import { clear, confirm, errorBox, h, status } from "../dom.js";
import { dump, load } from "../../vendor/js-yaml.js";

// "Invalid config: a.b[0].c: message; d: message" -> [{path, message}]
export function parseErrors(detail) {
  const text = String(detail).replace(/^.*?Invalid config:\s*/, "");
  const found = [];
  for (const part of text.split(/;\s+(?=[A-Za-z_][\w.\[\]-]*:\s)/)) {
    const match = part.match(/^([A-Za-z_][\w.\[\]-]*):\s*(.*)$/s);
    if (match) found.push({ path: match[1], message: match[2] });
  }
  return found.length ? found : [{ path: "", message: String(detail) }];
}

// The line (0-based) where a path like `runtime.models[0].provider` is written in block YAML
// (js-yaml's layout, or hand-written like it), else the line of its longest written prefix;
// -1 when not even its first key is there. An outline walk: a stack of the keys and sequence
// items above the current line, by indentation.
export function lineOf(text, path) {
  const stack = [];
  let best = -1;
  let bestLength = 0;
  const lines = text.split("\n");
  const pathOf = () => stack.map((s, i) => (typeof s.step === "number" ? `[${s.step}]` : (i ? `.${s.step}` : s.step))).join("");
  const consider = (i) => {
    const here = pathOf();
    if (here === path) return true;
    if ((path.startsWith(`${here}.`) || path.startsWith(`${here}[`)) && here.length > bestLength) {
      best = i; bestLength = here.length;
    }
    return false;
  };
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    const body = line.trimStart();
    if (!body || body.startsWith("#")) continue;
    const lead = line.length - body.length;
    let rest = body;
    let keyIndent = lead;
    if (body === "-" || body.startsWith("- ")) {
      while (stack.length && (stack.at(-1).indent > lead || (stack.at(-1).indent === lead && stack.at(-1).item))) stack.pop();
      const parent = stack.at(-1);
      const index = parent ? parent.count++ : 0;
      stack.push({ indent: lead, step: index, item: true, count: 0 });
      if (consider(i)) return i;
      rest = body.slice(2).trimStart();
      keyIndent = lead + (body.length - rest.length);
    }
    const key = rest.match(/^(["']?)([^"':#]+?)\1\s*:(\s|$)/);
    if (!key) continue;
    while (stack.length && stack.at(-1).indent >= keyIndent && !(stack.at(-1).item && stack.at(-1).indent < keyIndent)) stack.pop();
    stack.push({ indent: keyIndent, step: key[2], item: false, count: 0 });
    if (consider(i)) return i;
  }
  return best;
}

export function render(root, { ns, name }) {
  const editor = h("textarea", { id: "config-editor", class: "code", spellcheck: false, rows: 28, "aria-describedby": "config-help" });
  const problems = h("div", { class: "problems", "aria-live": "polite", id: "config-problems" });
  const note = h("div", { class: "status", "aria-live": "polite" });
  const validate = h("button", { type: "button", class: "ghost" }, "Validate");
  const save = h("button", { type: "button" }, "Save");
  const undo = h("button", { type: "button", class: "ghost" }, "Undo to previous version");
  const reload = h("button", { type: "button", class: "ghost" }, "Reload");
  let saved = "";

  function goTo(line) {
    if (line < 0) return;
    const lines = editor.value.split("\n");
    const from = lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
    editor.focus();
    editor.setSelectionRange(from, from + lines[line].length);
    const lineHeight = editor.scrollHeight / Math.max(lines.length, 1);
    editor.scrollTop = Math.max(0, lineHeight * (line - 3));
  }

  function showProblems(list, heading) {
    clear(problems, h("h2", {}, heading), h("ul", {}, list.map((p) => {
      const line = p.line ?? (p.path ? lineOf(editor.value, p.path) : -1);
      const where = h("button", { type: "button", class: "link path", "data-path": p.path }, `${p.path || "config"}${line >= 0 ? ` (line ${line + 1})` : ""}`);
      where.addEventListener("click", () => goTo(line));
      return h("li", { class: "problem" }, where, h("span", {}, ` ${p.message}`));
    })));
  }

  function parsed() {
    try {
      const document = load(editor.value);
      if (!document || typeof document !== "object" || Array.isArray(document)) {
        showProblems([{ path: "", message: "The config must be a mapping (key: value lines)", line: 0 }], "YAML error");
        return null;
      }
      return document;
    } catch (error) {
      const line = error.mark ? error.mark.line : -1;
      showProblems([{ path: "", message: error.reason || error.message, line }], "YAML error");
      return null;
    }
  }

  async function check() {
    clear(problems);
    const document = parsed();
    if (!document) return null;
    try {
      const body = await api("POST", projectPath(ns, name, "/config/validate"), { config: document });
      if (body.warnings.length) showProblems(body.warnings.map((w) => ({ path: w.split(":")[0], message: w.split(":").slice(1).join(":").trim() })), "Warnings (keys the server does not act on)");
      return document;
    } catch (error) {
      if (error.status === 422 || error.status === 400) showProblems(parseErrors(error.detail), "Errors");
      else clear(problems, errorBox(error));
      return null;
    }
  }

  async function loadConfig() {
    status(note, "Loading…");
    try {
      const body = await get(projectPath(ns, name));
      editor.value = dump(body.project.config, { lineWidth: -1, noRefs: true });
      saved = editor.value;
      clear(problems);
      if (body.project.validation_error) showProblems(parseErrors(body.project.validation_error), "The config on disk is invalid");
      status(note, "");
    } catch (error) { status(note, errorBox(error)); }
  }

  validate.addEventListener("click", async () => {
    status(note, "Validating…");
    const ok = await check();
    status(note, ok ? "The config is valid." : "Not saved: fix the errors below.", ok ? "ok" : "warn");
  });
  save.addEventListener("click", async () => {
    status(note, "Validating…");
    const document = await check();
    if (!document) { status(note, "Not saved: fix the errors below.", "warn"); return; }
    status(note, "Saving…");
    try {
      await api("PUT", projectPath(ns, name), { config: document });
      saved = editor.value;
      status(note, "Saved.", "ok");
    } catch (error) {
      if (error.status === 422) showProblems(parseErrors(error.detail), "Errors");
      status(note, errorBox(error));
    }
  });
  undo.addEventListener("click", async () => {
    try {
      const body = await get(projectPath(ns, name, "/config/previous"));
      if (!await confirm("Replace the config with the version before the last save?", "Restore")) return;
      await api("PUT", projectPath(ns, name), { config: body.config });
      await loadConfig();
      status(note, "Restored the previous version.", "ok");
    } catch (error) { status(note, errorBox(error)); }
  });
  reload.addEventListener("click", loadConfig);

  root.append(
    h("p", { id: "config-help", class: "muted" }, "llamafarm.yaml. Validate checks it on the server without saving; Save validates, then writes it (the old file is kept as the previous version)."),
    h("label", { for: "config-editor", class: "visually-hidden" }, "llamafarm.yaml"),
    h("div", { class: "row" }, validate, save, undo, reload), note, problems, editor);
  loadConfig();
  const leave = (e) => { if (editor.value !== saved) { e.preventDefault(); } };
  window.addEventListener("beforeunload", leave);
  return () => window.removeEventListener("beforeunload", leave);
}
