// Models: the cached and bundled models with sizes; download one with progress; delete one.
import { api, events, get, raw } from "../api.js";
import { bytes, clear, confirm, errorBox, field, h, progress, status, when } from "../dom.js";

export function render(root) {
  const list = h("div", {});
  const note = h("div", { class: "status", "aria-live": "polite" });
  const nameInput = h("input", { placeholder: "ORG/NAME or ORG/NAME:QUANT", autocomplete: "off", required: true });
  const dlStatus = h("div", { class: "status", "aria-live": "polite" });
  let controller = null;

  async function load() {
    try {
      const body = await get("/v1/models");
      clear(list, h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Model", "Size", "Kind", "Changed", ""].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, body.data.map((m) => {
          const del = h("button", { type: "button", class: "danger small", disabled: m.bundled, "aria-label": `Delete ${m.model_id}` }, "Delete");
          del.addEventListener("click", async () => {
            if (!await confirm(`Delete ${m.model_id} from the cache (${m.size_human})?`)) return;
            try {
              const r = await api("DELETE", `/v1/models/${m.model_id.split("/").map(encodeURIComponent).join("/")}`);
              status(note, `Deleted ${r.model_name}: ${bytes(r.size_freed)} freed.`, "ok");
              load();
            } catch (error) { status(note, errorBox(error)); }
          });
          return h("tr", {}, h("td", {}, m.model_id), h("td", {}, m.size_human || bytes(m.size_bytes)),
            h("td", {}, m.bundled ? "bundled" : "cached"), h("td", {}, when(m.last_modified)), h("td", {}, del));
        })))));
    } catch (error) { clear(list, errorBox(error)); }
  }

  const downloadButton = h("button", { type: "submit" }, "Download");
  const form = h("form", { class: "card form" }, h("h2", {}, "Download a model"),
    field("Hugging Face model", nameInput, "From the Hugging Face Hub (HF_ENDPOINT): needs network access."),
    downloadButton, dlStatus);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (controller) return;  // one download at a time
    downloadButton.disabled = true;
    const bar = progress(null, 1, "download");
    const text = h("span", {}, "Starting…");
    const cancel = h("button", { type: "button", class: "ghost small" }, "Cancel");
    controller = new AbortController();
    cancel.addEventListener("click", () => controller.abort());
    status(dlStatus, h("div", { class: "row" }, bar, text, cancel));
    try {
      const response = await raw("POST", "/v1/models/download", { body: { model_name: nameInput.value.trim() }, signal: controller.signal });
      for await (const e of events(response)) {
        if (e.event === "progress") {
          if (e.total) { bar.max = e.total; bar.value = e.downloaded; }
          text.textContent = `${bytes(e.downloaded)}${e.total ? ` of ${bytes(e.total)} (${Math.round(e.percent)}%)` : ""}`;
        } else if (e.event === "complete") {
          status(dlStatus, `${e.model_name}: ${e.cached ? "already cached" : "downloaded"}.`, "ok");
          load();
        } else if (e.event === "error") {
          status(dlStatus, errorBox({ detail: e.message }));
        }
      }
    } catch (error) {
      status(dlStatus, error.name === "AbortError" ? "Download cancelled." : errorBox(error));
    }
    controller = null;
    downloadButton.disabled = false;
  });

  root.append(h("h1", {}, "Models"), note, list, h("div", { class: "spacer" }), form);
  load();
  return () => controller && controller.abort();
}
