// Chat: streamed answers (fetch + SSE), the project's models, RAG on/off and database, the
// sources panel, thinking collapsed, sessions (new, resume, delete) and a stop button.
import { api, events, get, projectPath, raw } from "../api.js";
import { clear, confirm, errorBox, field, h, select, status } from "../dom.js";

export function render(root, { ns, name }) {
  let sessionId = null;
  let controller = null;
  const modelSelect = select([["", "(default model)"]], "");
  const ragBox = h("input", { type: "checkbox", id: "rag-on", checked: true });
  const thinkBox = h("input", { type: "checkbox", id: "think-on" });
  const dbSelect = select([["", "(default database)"]], "");
  const maxTokens = h("input", { type: "number", min: 1, step: 1, placeholder: "model's default", class: "narrow" });
  const log = h("div", { class: "messages", "aria-live": "polite", "aria-label": "Conversation" });
  const input = h("textarea", { rows: 3, placeholder: "Ask something… (Enter sends, Shift+Enter for a new line)", required: true });
  const send = h("button", { type: "submit" }, "Send");
  const stop = h("button", { type: "button", class: "ghost", disabled: true }, "Stop");
  const sessionList = h("ul", { class: "sessions" });
  const sourcesPanel = h("aside", { class: "sources", "aria-label": "Sources" }, h("h2", {}, "Sources"), h("p", { class: "muted" }, "The chunks an answer used appear here."));
  const chatStatus = h("div", { class: "status" });

  // The project's chats, from the server (newest first).
  async function renderSessions() {
    let listed;
    try {
      listed = (await get(projectPath(ns, name, "/chat/sessions"))).sessions;
    } catch (error) { clear(sessionList, h("li", {}, errorBox(error))); return; }
    clear(sessionList, listed.length ? listed.map((s) => {
      const title = s.title || "(empty chat)";
      const open = h("button", { type: "button", class: `link${s.session_id === sessionId ? " current" : ""}`,
        "data-session": s.session_id, title: `${s.messages} message(s) · ${new Date(s.last_used_at * 1000).toLocaleString()}` }, title);
      open.addEventListener("click", () => resume(s.session_id));
      const del = h("button", { type: "button", class: "ghost small", "aria-label": `Delete chat ${title}` }, "×");
      del.addEventListener("click", async () => {
        if (!await confirm(`Delete the chat "${title}"?`)) return;
        try {
          await api("DELETE", projectPath(ns, name, `/chat/sessions/${encodeURIComponent(s.session_id)}`));
        } catch (error) { if (error.status !== 404) { status(chatStatus, errorBox(error)); return; } }
        if (s.session_id === sessionId) newChat(); else renderSessions();
      });
      return h("li", {}, open, del);
    }) : h("li", { class: "muted" }, "No chats yet."));
  }

  function newChat() {
    sessionId = null;
    status(chatStatus, "");
    clear(log);
    clear(sourcesPanel, h("h2", {}, "Sources"), h("p", { class: "muted" }, "The chunks an answer used appear here."));
    renderSessions();
    input.focus();
  }

  async function resume(id) {
    sessionId = id;
    status(chatStatus, "");
    renderSessions();
    clear(log, h("p", { class: "muted" }, "Loading…"));
    try {
      const body = await get(projectPath(ns, name, `/chat/sessions/${encodeURIComponent(id)}/history`));
      clear(log, body.messages.map((m) => bubble(m.role, m.content)));
    } catch (error) { clear(log, errorBox(error)); }
  }

  function bubble(role, text) {
    return h("div", { class: `msg ${role}` }, h("div", { class: "who" }, role === "user" ? "You" : "Assistant"), h("div", { class: "text" }, text));
  }

  function showSources(sources) {
    clear(sourcesPanel, h("h2", {}, `Sources (${sources.length})`));
    if (!sources.length) { sourcesPanel.append(h("p", { class: "muted" }, "Retrieval found nothing for this question.")); return; }
    const chunk = h("div", { class: "chunk", "aria-live": "polite" });
    sourcesPanel.append(h("ol", {}, sources.map((s) => {
      const meta = s.metadata || {};
      const file = meta.filename || meta.source || s.source || "unknown";
      const page = meta.page ?? s.page;
      const button = h("button", { type: "button", class: "source" },
        h("span", { class: "fname" }, String(file).split("/").pop()),
        page != null ? h("span", { class: "muted" }, ` p. ${page}`) : null,
        h("span", { class: "score" }, Number(s.score).toFixed(3)));
      button.addEventListener("click", () => {
        for (const b of sourcesPanel.querySelectorAll(".source")) b.removeAttribute("aria-pressed");
        button.setAttribute("aria-pressed", "true");
        clear(chunk, h("h3", {}, String(file).split("/").pop()), h("pre", { class: "chunk-text" }, s.content));
      });
      return h("li", {}, button);
    })), chunk);
  }

  async function ask(text) {
    const user = bubble("user", text);
    const answer = bubble("assistant", "");
    answer.classList.add("streaming");
    const answerText = answer.querySelector(".text");
    log.append(user, answer);
    log.scrollTop = log.scrollHeight;
    controller = new AbortController();
    send.disabled = true; stop.disabled = false;
    status(chatStatus, "Thinking…");
    const body = { messages: [{ role: "user", content: text }], stream: true, rag_enabled: ragBox.checked, include_sources: true };
    if (modelSelect.value) body.model = modelSelect.value;
    if (maxTokens.value) body.max_tokens = Number(maxTokens.value);
    if (thinkBox.checked) body.think = true;
    if (ragBox.checked && dbSelect.value) body.database = dbSelect.value;
    const extraHeaders = sessionId ? { "X-Session-ID": sessionId } : {};
    let sawSources = false;
    try {
      const response = await raw("POST", projectPath(ns, name, "/chat/completions"), { body, signal: controller.signal, extraHeaders });
      const sid = response.headers.get("X-Session-ID");
      if (sid && sid !== sessionId) sessionId = sid;
      status(chatStatus, "Answering…");
      for await (const chunk of events(response)) {
        if (chunk.error) { answer.append(errorBox({ detail: chunk.error.message })); continue; }
        if (chunk.type === "sources") { showSources(chunk.sources); sawSources = true; continue; }
        if (chunk.sources && !sawSources && ragBox.checked) { showSources(chunk.sources); sawSources = true; }
        const choice = chunk.choices && chunk.choices[0];
        if (choice && choice.delta && choice.delta.content) {
          answerText.textContent += choice.delta.content;
          log.scrollTop = log.scrollHeight;
        }
        if (chunk.thinking && chunk.thinking.content) {
          // Collapsed: the answer first, the reasoning a click away.
          answer.insertBefore(h("details", { class: "thinking" }, h("summary", {}, "Thinking"), h("pre", {}, chunk.thinking.content.trim())), answerText);
        }
      }
      status(chatStatus, "");
    } catch (error) {
      if (error.name === "AbortError") {
        answer.append(h("p", { class: "muted" }, "Stopped."));
        status(chatStatus, "Stopped.");
      } else {
        answer.append(errorBox(error));
        status(chatStatus, "");
      }
    } finally {
      answer.classList.remove("streaming");
      send.disabled = false; stop.disabled = true;
      controller = null;
      renderSessions();
    }
  }

  const form = h("form", { class: "composer" }, field("Message", input), h("div", { class: "row" }, send, stop));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  const newButton = h("button", { type: "button" }, "New chat");
  newButton.addEventListener("click", newChat);
  ragBox.addEventListener("change", () => { dbSelect.disabled = !ragBox.checked; });

  root.append(h("div", { class: "chat" },
    h("nav", { class: "chat-side", "aria-label": "Chats" }, newButton, sessionList),
    h("div", { class: "chat-main" },
      h("div", { class: "inline controls" }, field("Model", modelSelect),
        h("div", { class: "check" }, ragBox, h("label", { for: "rag-on" }, "Use RAG")), field("Database", dbSelect),
        field("Max tokens", maxTokens),
        h("div", { class: "check" }, thinkBox, h("label", { for: "think-on" }, "Think first (thinking models)"))),
      log, chatStatus, form),
    sourcesPanel));
  renderSessions();

  get(projectPath(ns, name, "/models")).then((body) => {
    for (const m of body.models) modelSelect.append(h("option", { value: m.name }, `${m.name}${m.default ? " (default)" : ""} · ${m.model}`));
  }, (error) => status(chatStatus, errorBox(error)));
  get(projectPath(ns, name, "/rag/databases")).then((body) => {
    for (const d of body.databases) dbSelect.append(h("option", { value: d.name }, d.name));
    if (!body.databases.length) { ragBox.checked = false; ragBox.disabled = true; dbSelect.disabled = true; }
  }, () => { ragBox.checked = false; dbSelect.disabled = true; });
  return () => controller && controller.abort();
}
