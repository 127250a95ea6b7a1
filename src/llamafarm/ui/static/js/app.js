// The Designer's shell: the hash router, the project tabs and the API key prompt.
// Each page is loaded when first shown (a dynamic import): the first page fetches only its own
// module, not the others nor the YAML library of the config editor.
import { getKey, setKey } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

const projects = () => import("./pages/projects.js");
const models = () => import("./pages/models.js");
const TABS = [
  ["overview", "Overview", () => import("./pages/dashboard.js")],
  ["data", "Data", () => import("./pages/data.js")],
  ["chat", "Chat", () => import("./pages/chat.js")],
  ["retrieval", "Retrieval", () => import("./pages/retrieval.js")],
  ["config", "Config", () => import("./pages/config.js")],
  ["events", "Events", () => import("./pages/events.js")],
];

let cleanup = null;
let shown = 0;  // the latest route() call: an older one whose page loads late gives way

async function route() {
  const mine = ++shown;
  if (cleanup) { try { cleanup(); } catch { /* a page's own teardown */ } cleanup = null; }
  const main = document.getElementById("main");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let page = projects;
  let ctx = { nav: "projects" };
  if (parts[0] === "models") {
    page = models; ctx = { nav: "models" };
  } else if (parts[0] === "p" && parts[1] && parts[2]) {
    const tab = TABS.find((t) => t[0] === parts[3]) || TABS[0];
    ctx = { nav: "projects", ns: parts[1], name: parts[2], tab: tab[0] };
    page = tab[2];
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === ctx.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  let target = main;
  if (ctx.ns) {
    const base = `#/p/${encodeURIComponent(ctx.ns)}/${encodeURIComponent(ctx.name)}`;
    main.append(
      h("div", { class: "project-head" },
        h("h1", {}, h("span", { class: "muted" }, `${ctx.ns} / `), ctx.name)),
      h("nav", { class: "tabs", "aria-label": "Project" },
        TABS.map(([key, label]) => h("a", {
          href: `${base}/${key}`, "aria-current": key === ctx.tab ? "page" : null,
        }, label))),
    );
    target = h("section", { class: "page", "aria-label": TABS.find((t) => t[0] === ctx.tab)[1] });
    main.append(target);
  }
  let module;
  try {
    module = await page();
  } catch (error) {
    if (mine === shown) target.append(errorBox(`This page could not be loaded (${error.message})`));
    return;
  }
  if (mine !== shown) return;
  const result = module.render(target, ctx);
  if (typeof result === "function") cleanup = result;
}

function keyDialog(reason) {
  const dialog = document.getElementById("key-dialog");
  if (dialog.open) return;
  document.getElementById("key-reason").textContent = reason
    || "An API key for this server. It is kept in this browser tab only (session storage), never in a URL.";
  const input = document.getElementById("key-input");
  input.value = getKey();
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
}

function start() {
  const dialog = document.getElementById("key-dialog");
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setKey(document.getElementById("key-input").value.trim());
    else if (dialog.returnValue === "clear") setKey("");
    else return;
    route();
  });
  document.getElementById("key-button").addEventListener("click", () => keyDialog());
  window.addEventListener("lf-auth", (event) => keyDialog(`${event.detail}. Enter a key to go on.`));
  window.addEventListener("hashchange", route);
  route();
}

start();
