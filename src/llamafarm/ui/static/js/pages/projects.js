// Projects: the namespaces, a namespace's projects, create one from a template, import an
// example (with its processing progress), delete one.
import { api, get, projectPath, watchTask } from "../api.js";
import { clear, confirm, errorBox, field, h, progress, select, status, when } from "../dom.js";

const NS_KEY = "lf.namespace";
const TEMPLATES = [["default", "default (RAG: chat model, database, documents dataset)"],
  ["server", "server (chat only)"], ["rag", "rag"]];

export function render(root) {
  let namespace = localStorage.getItem(NS_KEY) || "default";
  const nsInput = h("input", { value: namespace, autocomplete: "off", pattern: "[A-Za-z0-9_.\\-]{1,64}" });
  const list = h("div", { class: "cards", "aria-live": "polite" });
  const listStatus = h("div", { class: "status" });
  const nsList = h("ul", { class: "namespaces", "aria-label": "Namespaces" });

  async function loadNamespaces() {
    try {
      const body = await get("/v1/projects");
      const shown = body.namespaces.some((n) => n.name === namespace) ? body.namespaces
        : [...body.namespaces, { name: namespace, project_count: 0 }];
      clear(nsList, shown.map((n) => {
        const pick = h("button", { type: "button", class: "ghost small", "data-namespace": n.name,
          "aria-pressed": n.name === namespace ? "true" : "false" }, `${n.name} (${n.project_count})`);
        pick.addEventListener("click", () => { nsInput.value = n.name; load(); });
        return h("li", {}, pick);
      }));
    } catch (error) { clear(nsList, h("li", {}, errorBox(error))); }
  }

  async function load() {
    namespace = nsInput.value.trim() || "default";
    localStorage.setItem(NS_KEY, namespace);
    loadNamespaces();
    status(listStatus, "Loading projects…");
    try {
      const body = await get(`/v1/projects/${encodeURIComponent(namespace)}`);
      clear(list, body.projects.length ? body.projects.map(card)
        : h("p", { class: "muted" }, `No projects in ${namespace} yet: create one or import an example below.`));
      status(listStatus, `${body.total} project(s) in ${namespace}`);
    } catch (error) {
      clear(list);
      status(listStatus, errorBox(error));
    }
  }

  function card(project) {
    const c = project.config || {};
    const models = (c.runtime && c.runtime.models) || [];
    const datasets = c.datasets || [];
    const href = `#/p/${encodeURIComponent(project.namespace)}/${encodeURIComponent(project.name)}`;
    const del = h("button", { type: "button", class: "danger small", "aria-label": `Delete ${project.name}` }, "Delete");
    const note = h("div", { class: "status" });
    del.addEventListener("click", async () => {
      if (!await confirm(`Delete project ${project.namespace}/${project.name} with all its files, vectors and chats? This cannot be undone.`)) return;
      del.disabled = true;
      status(note, "Deleting…");
      try {
        await api("DELETE", projectPath(project.namespace, project.name));
        await load();
      } catch (error) { status(note, errorBox(error)); del.disabled = false; }
    });
    return h("article", { class: "card project-card" },
      h("h3", {}, h("a", { href }, project.name)),
      h("p", { class: "muted" }, `${models.length} model(s) · ${datasets.length} dataset(s) · changed ${when(project.last_modified)}`),
      project.validation_error ? h("p", { class: "error" }, `Invalid config: ${project.validation_error}`) : null,
      h("div", { class: "row" }, h("a", { class: "button small", href }, "Open"), del),
      note);
  }

  // Create from a template
  const nameInput = h("input", { required: true, autocomplete: "off", placeholder: "my-project" });
  const template = select(TEMPLATES, "default");
  const createStatus = h("div", { class: "status", "aria-live": "polite" });
  const createForm = h("form", { class: "card form" },
    h("h2", {}, "New project"),
    field("Project name", nameInput, "Letters, digits, '_', '.' or '-'"),
    field("Template", template),
    h("button", { type: "submit" }, "Create project"), createStatus);
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    status(createStatus, "Creating…");
    try {
      const body = await api("POST", `/v1/projects/${encodeURIComponent(namespace)}`,
        { name: nameInput.value.trim(), config_template: template.value });
      location.hash = `#/p/${encodeURIComponent(body.project.namespace)}/${encodeURIComponent(body.project.name)}/data`;
    } catch (error) { status(createStatus, errorBox(error)); }
  });

  // Examples
  const examples = h("div", { class: "cards" }, h("p", { class: "muted" }, "Loading examples…"));
  async function loadExamples() {
    try {
      const body = await get("/v1/examples");
      clear(examples, body.examples.map(exampleCard));
    } catch (error) { clear(examples, errorBox(error)); }
  }
  function exampleCard(example) {
    const name = h("input", { value: example.id, autocomplete: "off" });
    const button = h("button", { type: "submit" }, "Import");
    const note = h("div", { class: "status", "aria-live": "polite" });
    const form = h("form", { class: "card example", "data-example": example.id },
      h("h3", {}, example.title),
      h("p", {}, example.description),
      h("p", { class: "muted" }, `${example.dataset_count} dataset(s) · ${example.data_size_human} of data`),
      field("Project name", name), button, note);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      status(note, "Importing the files…");
      try {
        const body = await api("POST", `/v1/examples/${encodeURIComponent(example.id)}/import-project`,
          { namespace, name: name.value.trim() || example.id, process: true });
        const bars = body.task_ids.map(() => progress(0, 1, "processing"));
        const text = h("span", {}, "Processing…");
        status(note, h("div", {}, text, bars));
        const results = await Promise.all(body.task_ids.map((taskId, i) =>
          watchTask(body.namespace, body.project, taskId, (task) => {
            bars[i].max = task.meta.total || 1; bars[i].value = task.meta.current || 0;
          })));
        const failed = results.filter((t) => t.state !== "SUCCESS");
        const projectName = body.project;
        const href = `#/p/${encodeURIComponent(body.namespace)}/${encodeURIComponent(projectName)}`;
        status(note, h("span", {}, failed.length ? `Imported; ${failed.length} task(s) ended ${failed.map((t) => t.state).join(", ")}. `
          : "Imported and processed. ", h("a", { href }, `Open ${projectName}`)), failed.length ? "warn" : "ok");
        load();
      } catch (error) { status(note, errorBox(error)); }
      button.disabled = false;
    });
    return form;
  }

  const nsForm = h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); load(); } },
    field("Namespace", nsInput), h("button", { type: "submit" }, "Show projects"));
  root.append(
    h("h1", {}, "Projects"), h("div", { class: "inline" }, nsForm, nsList), listStatus, list,
    h("div", { class: "grid2" }, createForm,
      h("section", { class: "examples" }, h("h2", {}, "Start from an example"), examples)),
  );
  load();
  loadExamples();
}
