// Retrieval playground: query a database with a strategy, top-k, threshold and metadata
// filters; results with score, source, page, heading and the query's words highlighted; two
// strategies side by side on one query.
import { api, get, projectPath } from "../api.js";
import { clear, errorBox, field, h, highlighted, select, status } from "../dom.js";

export function render(root, { ns, name }) {
  let databases = [];
  const query = h("input", { type: "search", required: true, placeholder: "What do you want to find?", autocomplete: "off" });
  const dbSelect = select([]);
  const strategy = select([["", "(default)"]]);
  const compare = select([["", "(no comparison)"]]);
  const topK = h("input", { type: "number", min: 1, max: 100, value: 5 });
  const threshold = h("input", { type: "number", step: "0.01", placeholder: "none" });
  const filters = h("input", { placeholder: '{"source": "handbook.pdf"}', autocomplete: "off" });
  const note = h("div", { class: "status", "aria-live": "polite" });
  const results = h("div", { class: "compare" });

  function strategies() {
    const db = databases.find((d) => d.name === dbSelect.value);
    const names = db ? (db.retrieval_strategies || []).map((s) => s.name || s) : [];
    for (const sel of [strategy, compare]) {
      const keep = sel.options[0];
      sel.replaceChildren(keep, ...names.map((n) => h("option", { value: n }, n)));
    }
  }
  dbSelect.addEventListener("change", strategies);

  async function run(strategyName, q, metadataFilters) {
    const body = { query: q, database: dbSelect.value || undefined, top_k: Number(topK.value) || 5 };
    if (strategyName) body.retrieval_strategy = strategyName;
    if (threshold.value !== "") body.score_threshold = Number(threshold.value);
    if (metadataFilters) body.metadata_filters = metadataFilters;
    return api("POST", projectPath(ns, name, "/rag/query"), body);
  }

  function column(title, body, q) {
    return h("section", { class: "results", "aria-label": `Results: ${title}` },
      h("h2", {}, title),
      h("p", { class: "muted" }, `${body.total_results} result(s) · ${body.retrieval_strategy_used} on ${body.database_used} · ${Math.round(body.processing_time_ms)} ms`),
      body.results.length ? h("ol", {}, body.results.map((r) => {
        const m = r.metadata || {};
        const file = m.filename || m.source || "unknown";
        return h("li", { class: "result card" },
          h("div", { class: "result-head" },
            h("span", { class: "score", title: "score" }, Number(r.score).toFixed(3)),
            h("span", { class: "fname" }, String(file).split("/").pop()),
            m.page != null ? h("span", { class: "muted" }, `page ${m.page}`) : null,
            m.heading || m.section ? h("span", { class: "muted" }, `§ ${m.heading || m.section}`) : null),
          h("p", { class: "chunk-text" }, highlighted(r.content, q)));
      })) : h("p", { class: "muted" }, "Nothing matched."));
  }

  const form = h("form", { class: "card form retrieval-form" },
    field("Query", query),
    h("div", { class: "inline" }, field("Database", dbSelect), field("Strategy", strategy), field("Compare with", compare)),
    h("div", { class: "inline" }, field("Top k", topK), field("Score threshold", threshold), field("Metadata filters (JSON)", filters)),
    h("button", { type: "submit" }, "Search"), note);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let metadataFilters = null;
    if (filters.value.trim()) {
      try { metadataFilters = JSON.parse(filters.value); } catch (error) {
        status(note, errorBox(`Metadata filters must be a JSON object: ${error.message}`)); return;
      }
    }
    const q = query.value.trim();
    status(note, "Searching…");
    clear(results);
    const runs = [strategy.value];
    if (compare.value) runs.push(compare.value);
    try {
      const bodies = await Promise.all(runs.map((s) => run(s, q, metadataFilters)));
      clear(results, bodies.map((b, i) => column(runs[i] || b.retrieval_strategy_used, b, q)));
      results.classList.toggle("two", bodies.length === 2);
      status(note, "");
    } catch (error) { status(note, errorBox(error)); }
  });

  root.append(form, results);
  get(projectPath(ns, name, "/rag/databases")).then((body) => {
    databases = body.databases;
    dbSelect.replaceChildren(...databases.map((d) => h("option", { value: d.name, selected: d.name === body.default_database }, d.name)));
    if (!databases.length) status(note, "This project has no RAG database.", "warn");
    strategies();
  }, (error) => status(note, errorBox(error)));
}
