// Data: upload many files (drag and drop or the file input) with per-file progress, process
// them with live per-file states, cancel a task, remove a file.
import { api, get, projectPath, upload, watchTask } from "../api.js";
import { bytes, clear, confirm, errorBox, field, h, progress, select, status } from "../dom.js";

const STATE_TEXT = {
  PENDING: "queued", STARTED: "processing", SUCCESS: "done", SKIPPED: "done (unchanged)",
  FAILURE: "failed", CANCELLED: "cancelled", REVERTED: "reverted",
};
const PARALLEL = 3;

// "Finished: 3 processed, 1 failed" (the counts that are not 0).
function finished(task) {
  const r = task.result;
  if (!r) return `Finished: ${task.state}`;
  const parts = [[r.processed_files, "processed"], [r.skipped_files, "unchanged"], [r.failed_files, "failed"]]
    .filter(([n]) => n).map(([n, what]) => `${n} ${what}`);
  return `Finished: ${parts.join(", ") || "nothing to do"}`;
}

// A started file says the step it is at (parsing, then embedding); the others their state.
function stateText(f) {
  if (f.state === "STARTED" && f.phase) return f.phase;
  return STATE_TEXT[f.state] || f.state;
}

export function render(root, { ns, name }) {
  let datasets = [];
  let stopped = false;
  const picker = h("div", { class: "inline" });
  const fileInput = h("input", { type: "file", multiple: true, id: "file-input", class: "visually-hidden" });
  const autoProcess = h("input", { type: "checkbox", checked: true, id: "auto-process" });
  const drop = h("label", { class: "drop", for: "file-input", tabindex: "-1" },
    h("strong", {}, "Drop files here"), h("span", {}, " or "), h("span", { class: "linkish" }, "choose files"),
    h("small", { class: "muted" }, "PDF, DOCX, Markdown, text, CSV, HTML, XLSX, PPTX, JSON, EPUB…"));
  const uploads = h("ul", { class: "uploads", "aria-live": "polite", "aria-label": "Uploads" });
  const taskBox = h("div", { class: "task", "aria-live": "polite" });
  const filesBox = h("div", {});
  const topStatus = h("div", { class: "status" });
  let datasetSelect = select([]);

  async function loadDatasets() {
    try {
      const body = await get(projectPath(ns, name, "/datasets"));
      datasets = body.datasets;
      const current = datasetSelect.value;
      const next = select(datasets.map((d) => d.name), current || (datasets[0] && datasets[0].name));
      next.id = "dataset-select";
      next.addEventListener("change", showFiles);
      datasetSelect.replaceWith(next);
      datasetSelect = next;
      if (!datasets.length) status(topStatus, "This project has no dataset: add one in Config (datasets:) first.", "warn");
      showFiles();
    } catch (error) { status(topStatus, errorBox(error)); }
  }

  function dataset() { return datasets.find((d) => d.name === datasetSelect.value); }

  function showFiles() {
    const d = dataset();
    if (!d) { clear(filesBox); return; }
    const files = d.details ? d.details.file_details : [];
    clear(filesBox, h("h2", {}, `Files in ${d.name}`),
      h("p", { class: "muted" }, `${files.length} file(s), ${bytes(d.details && d.details.total_size_bytes)} · database ${d.database} · strategy ${d.data_processing_strategy}`),
      files.length ? h("div", { class: "table-wrap" }, h("table", { class: "files" },
        h("thead", {}, h("tr", {}, ["File", "Size", "Processed", "Chunks", ""].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, files.map((f) => fileRow(d, f))))) : h("p", { class: "muted" }, "No files yet."));
  }

  function fileRow(d, f) {
    const remove = h("button", { type: "button", class: "danger small", "aria-label": `Remove ${f.original_filename}` }, "Remove");
    const note = h("span", {});
    remove.addEventListener("click", async () => {
      if (!await confirm(`Remove ${f.original_filename} and its chunks from ${d.name}?`, "Remove")) return;
      remove.disabled = true;
      try {
        const body = await api("DELETE", projectPath(ns, name, `/datasets/${encodeURIComponent(d.name)}/data/${f.hash}?remove_from_disk=true`));
        status(topStatus, `Removed ${f.original_filename}: ${body.chunks_removed} chunk(s).`, "ok");
        loadDatasets();
      } catch (error) { clear(note, errorBox(error)); remove.disabled = false; }
    });
    return h("tr", {}, h("td", {}, f.original_filename), h("td", {}, bytes(f.size)),
      h("td", {}, f.processed ? "yes" : "no"), h("td", {}, String(f.chunks)), h("td", {}, remove, note));
  }

  async function send(files) {
    const d = dataset();
    if (!d || !files.length) return;
    const rows = [...files].map((file) => {
      const bar = progress(0, file.size || 1, `upload of ${file.name}`);
      const state = h("span", { class: "state" }, "waiting");
      const li = h("li", { "data-file": file.name }, h("span", { class: "fname" }, file.name), h("span", { class: "muted" }, bytes(file.size)), bar, state);
      uploads.append(li);
      return { file, bar, state, li };
    });
    const path = projectPath(ns, name, `/datasets/${encodeURIComponent(d.name)}/data?auto_process=false`);
    let next = 0;
    let stored = 0;
    async function worker() {
      while (next < rows.length && !stopped) {
        const row = rows[next++];
        row.state.textContent = "uploading";
        try {
          const body = await upload(path, row.file, (loaded, total) => { row.bar.max = total; row.bar.value = loaded; });
          row.bar.value = row.bar.max;
          row.hash = body.hash;
          if (body.skipped) { row.state.textContent = "duplicate: skipped"; row.li.classList.add("skipped"); }
          else { row.state.textContent = "uploaded"; stored += 1; }
        } catch (error) {
          row.state.replaceChildren(errorBox(error));
          row.li.classList.add("failed");
        }
      }
    }
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    await loadDatasets();
    if (autoProcess.checked && rows.some((r) => r.hash)) await process(d.name, rows);
  }

  async function process(datasetName, rows = []) {
    clear(taskBox, "Queuing processing…");
    let taskId;
    try {
      const body = await api("POST", projectPath(ns, name, `/datasets/${encodeURIComponent(datasetName)}/actions`), { action_type: "process" });
      taskId = body.task_id;
    } catch (error) { clear(taskBox, errorBox(error)); return; }
    const bar = progress(0, 1, "processing");
    const summary = h("span", {});
    const list = h("ul", { class: "task-files" });
    const cancel = h("button", { type: "button", class: "ghost small" }, "Cancel task");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try { await api("DELETE", projectPath(ns, name, `/tasks/${taskId}`)); summary.textContent = "Cancelling…"; }
      catch (error) { taskBox.append(errorBox(error)); cancel.disabled = false; }
    });
    clear(taskBox, h("h2", {}, "Processing"), h("div", { class: "row" }, bar, summary, cancel), list);
    try {
      const task = await watchTask(ns, name, taskId, (t) => {
        bar.max = t.meta.total || 1; bar.value = t.meta.current || 0;
        summary.textContent = `${t.meta.current}/${t.meta.total} file(s) · ${t.state}`;
        clear(list, t.meta.files.map((f) => h("li", { "data-state": f.state, "data-phase": f.phase, "data-file": f.filename },
          h("span", { class: "fname" }, f.filename),
          h("span", { class: `badge ${STATE_TEXT[f.state] ? f.state.toLowerCase() : ""}` }, stateText(f)),
          f.chunks != null ? h("span", { class: "muted" }, `${f.chunks} chunk(s)`) : null,
          f.error ? h("span", { class: "error" }, f.error) : null)));
        for (const f of t.meta.files) {
          const row = rows.find((r) => r.hash === f.hash);
          if (row) row.state.textContent = stateText(f);
        }
      }, { signal: { get aborted() { return stopped; } } });
      cancel.disabled = true;
      summary.textContent = task.state === "REVOKED"
        ? `Cancelled: ${task.meta.files.filter((f) => f.state === "REVERTED").length} file(s) reverted (their chunks removed), ${task.meta.files.filter((f) => f.state === "CANCELLED").length} left unprocessed`
        : finished(task);
      taskBox.dataset.done = task.state;
      loadDatasets();
    } catch (error) { taskBox.append(errorBox(error)); }
  }

  fileInput.addEventListener("change", () => { send(fileInput.files); fileInput.value = ""; });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files); });
  const processButton = h("button", { type: "button", class: "ghost" }, "Process all files now");
  processButton.addEventListener("click", () => dataset() && process(dataset().name));

  root.append(
    h("div", { class: "inline" }, field("Dataset", datasetSelect), h("div", { class: "check" }, autoProcess, h("label", { for: "auto-process" }, "Process after upload")), processButton),
    topStatus, fileInput, drop, uploads, taskBox, filesBox);
  // The select was replaced once loaded; keep the label pointing at it.
  loadDatasets().then(() => { const label = root.querySelector(".field label"); if (label) label.htmlFor = datasetSelect.id; });
  return () => { stopped = true; };
}
