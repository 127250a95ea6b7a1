// Events: a project's event log with type and time filters; one event's sub-events as a
// timeline with durations.
import { get, projectPath } from "../api.js";
import { clear, errorBox, field, h, select, status, when } from "../dom.js";

const PAGE = 25;

export function render(root, { ns, name }) {
  const type = select([["", "(all types)"], ["inference", "inference (chat)"], ["rag_processing", "rag_processing (a processed file)"]], "");
  const start = h("input", { type: "datetime-local" });
  const end = h("input", { type: "datetime-local" });
  const note = h("div", { class: "status", "aria-live": "polite" });
  const list = h("div", { class: "event-list" });
  const detail = h("div", { class: "event-detail", "aria-live": "polite" });
  let offset = 0;

  const iso = (v) => (v ? new Date(v).toISOString() : "");

  async function load() {
    const params = new URLSearchParams({ limit: PAGE, offset });
    if (type.value) params.set("type", type.value);
    if (start.value) params.set("start_time", iso(start.value));
    if (end.value) params.set("end_time", iso(end.value));
    status(note, "Loading…");
    try {
      const body = await get(projectPath(ns, name, `/event_logs?${params}`));
      const prev = h("button", { type: "button", class: "ghost small", disabled: offset === 0 }, "Newer");
      const next = h("button", { type: "button", class: "ghost small", disabled: offset + PAGE >= body.total }, "Older");
      prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
      next.addEventListener("click", () => { offset += PAGE; load(); });
      clear(list, body.events.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["When", "Type", "Summary"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, body.events.map((e) => {
          const open = h("button", { type: "button", class: "link" }, e.type);
          open.addEventListener("click", () => show(e.event_id));
          return h("tr", { "data-type": e.type }, h("td", {}, when(e.timestamp)), h("td", {}, open),
            h("td", {}, Object.entries(e.summary || {}).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ")));
        })))) : h("p", { class: "muted" }, "No events match."),
      h("div", { class: "row" }, prev, h("span", { class: "muted" }, `${offset + 1}–${Math.min(offset + PAGE, body.total)} of ${body.total}`), next));
      list.dataset.filter = params.toString();  // what the list shows (for tests, and a reload)
      status(note, "");
    } catch (error) { status(note, errorBox(error)); }
  }

  async function show(eventId) {
    clear(detail, h("p", { class: "muted" }, "Loading…"));
    try {
      const e = await get(projectPath(ns, name, `/event_logs/${encodeURIComponent(eventId)}`));
      const subs = e.sub_events || [];
      const total = Math.max(1, ...subs.map((s) => (s.elapsed_ms || 0) + (s.duration_ms || 0)));
      clear(detail, h("h2", {}, `${e.type} · ${when(e.timestamp)}`),
        subs.length ? h("ol", { class: "timeline" }, subs.map((s) => {
          const bar = h("div", { class: "bar" });
          bar.style.marginLeft = `${(100 * Math.max(0, (s.elapsed_ms || 0) - (s.duration_ms || 0))) / total}%`;
          bar.style.width = `${Math.max(0.5, (100 * (s.duration_ms || 0)) / total)}%`;
          return h("li", {}, h("div", { class: "tl-label" }, h("strong", {}, s.name), h("span", { class: "muted" }, ` ${(s.duration_ms || 0).toFixed(1)} ms`)),
            h("div", { class: "track", role: "img", "aria-label": `${s.name}: ${(s.duration_ms || 0).toFixed(1)} ms` }, bar));
        })) : h("p", { class: "muted" }, "No sub-events."),
        h("details", {}, h("summary", {}, "Data"), h("pre", {}, JSON.stringify(e.data, null, 2))));
    } catch (error) { clear(detail, errorBox(error)); }
  }

  const form = h("form", { class: "inline card" }, field("Type", type), field("From", start), field("To", end),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
  root.append(form, note, h("div", { class: "grid2" }, list, detail));
  load();
  const wanted = location.hash.split("/")[5];
  if (wanted) show(decodeURIComponent(wanted));
}
