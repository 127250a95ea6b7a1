// A project's overview: datasets (files, sizes), databases (chunks), models, health (the
// server's components, and the project's database, embedder and index), events.
import { get, headers, projectPath } from "../api.js";
import { bytes, clear, errorBox, h, when } from "../dom.js";

function section(title, body) {
  return h("section", { class: "card" }, h("h2", {}, title), body);
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

function badge(state) {
  return h("span", { class: `badge ${String(state).toLowerCase()}` }, state);
}

export function render(root, { ns, name }) {
  const grid = h("div", { class: "dash" }, h("p", { class: "muted" }, "Loading…"));
  root.append(grid);
  const settle = (promise) => promise.then((v) => ({ v }), (e) => ({ e }));
  Promise.all([
    settle(get(projectPath(ns, name))),
    settle(get(projectPath(ns, name, "/datasets"))),
    settle(get(projectPath(ns, name, "/rag/databases"))),
    settle(get(projectPath(ns, name, "/models"))),
    settle(fetchHealth()),
    settle(get(projectPath(ns, name, "/event_logs?limit=8"))),
  ]).then(([project, datasets, databases, models, health, events]) => {
    const parts = [];
    if (project.e) { clear(grid, errorBox(project.e)); return; }
    if (project.v.project.validation_error) {
      parts.push(h("div", { class: "error", role: "alert" }, `The config is invalid: ${project.v.project.validation_error} — fix it in Config.`));
    }
    const chunksByDb = {};
    if (datasets.v) {
      for (const d of datasets.v.datasets) {
        const chunks = (d.details ? d.details.file_details : []).reduce((s, f) => s + (f.chunks || 0), 0);
        chunksByDb[d.database] = (chunksByDb[d.database] || 0) + chunks;
      }
    }
    parts.push(section("Datasets", datasets.e ? errorBox(datasets.e) : table(
      ["Dataset", "Files", "Size", "Database", "Strategy"],
      datasets.v.datasets.map((d) => [h("a", { href: `#/p/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/data` }, d.name),
        d.details ? d.details.total_files : d.files.length, d.details ? bytes(d.details.total_size_bytes) : "–",
        d.database, d.data_processing_strategy]), "No datasets.")));
    parts.push(section("Databases", databases.e ? errorBox(databases.e) : table(
      ["Database", "Type", "Chunks", "Retrieval strategies"],
      databases.v.databases.map((d) => [d.name + (d.is_default ? " (default)" : ""), d.type,
        String(chunksByDb[d.name] || 0), (d.retrieval_strategies || []).map((s) => s.name || s).join(", ")]),
      "No RAG databases.")));
    parts.push(section("Models", models.e ? errorBox(models.e) : table(
      ["Name", "Provider", "Model", ""],
      models.v.models.map((m) => [m.name, m.provider, m.model, m.default ? "default" : ""]), "No models.")));
    // The project's retrieval (its default database's store, embedder and index) comes after:
    // its first check may load the embedder, and the rest of the page does not wait for it.
    const retrieval = h("div", { class: "rag-health", "aria-live": "polite" });
    if (databases.v && databases.v.databases.length) {
      retrieval.append(h("p", { class: "muted" }, "Checking the database and its embedder…"));
      get(projectPath(ns, name, "/rag/health")).then((r) => clear(retrieval,
        h("p", {}, `Retrieval (${r.database}): `, badge(r.status)),
        table(["Component", "Status", "Latency", "Message"],
          Object.values(r.components).map((c) => [c.name, badge(c.status), c.latency == null ? "–" : `${Math.round(c.latency)} ms`, c.message || ""]), "")),
      (error) => clear(retrieval, errorBox(error)));
    }
    parts.push(section("Health", health.e ? errorBox(health.e) : h("div", {},
      h("p", {}, "Server: ", badge(health.v.status)),
      table(["Component", "Status", "Latency", "Message"],
        health.v.components.map((c) => [c.name, badge(c.status), c.latency_ms == null ? "–" : `${Math.round(c.latency_ms)} ms`, c.message || ""]), ""),
      retrieval)));
    parts.push(section("Newest events", events.e ? errorBox(events.e) : table(
      ["When", "Type", "Summary"],
      events.v.events.map((e) => [when(e.timestamp), h("a", { href: `#/p/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/events/${encodeURIComponent(e.event_id)}` }, e.type),
        Object.entries(e.summary || {}).slice(0, 4).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ")]),
      "No events yet.")));
    clear(grid, parts);
  });
}

// /health answers 503 with the same report when a component is unhealthy: show it anyway.
async function fetchHealth() {
  try {
    return await get("/health");
  } catch (error) {
    if (error.status === 503) {
      const response = await fetch("/health", { headers: headers() });
      return response.json();
    }
    throw error;
  }
}
