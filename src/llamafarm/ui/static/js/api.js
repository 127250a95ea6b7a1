// The API client: same origin only, the key (if any) as `Authorization: Bearer`, every error
// as an ApiError carrying the server's `detail`. A 401 asks for a key (see app.js).

const KEY = "lf.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function getKey() { return sessionStorage.getItem(KEY) || ""; }
export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
}

export function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const key = getKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

function detailOf(body, status) {
  if (body && body.detail !== undefined) {
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  }
  return `The server answered ${status}`;
}

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = new ApiError(response.status, detailOf(body, response.status));
  if (response.status === 401) window.dispatchEvent(new CustomEvent("lf-auth", { detail: error.detail }));
  return error;
}

// fetch with the key; the Response when ok, else throws ApiError.
export async function raw(method, path, { body, signal, extraHeaders } = {}) {
  const init = { method, headers: headers(extraHeaders), signal, credentials: "same-origin" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `The server cannot be reached (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function api(method, path, body, options = {}) {
  const response = await raw(method, path, { ...options, body });
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => api("GET", path, undefined, options);

// A project's API base path.
export function projectPath(ns, name, rest = "") {
  return `/v1/projects/${encodeURIComponent(ns)}/${encodeURIComponent(name)}${rest}`;
}

// Multipart upload of one file with upload progress (fetch cannot report it; XHR can).
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("lf-auth", { detail: detailOf(body, 401) }));
        reject(new ApiError(xhr.status, detailOf(body, xhr.status)));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "The upload failed: the server cannot be reached")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "The upload was cancelled")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// The `data:` payloads of a server-sent event stream, parsed as JSON, until `[DONE]`.
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = frame.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// Poll a task until it finishes; onUpdate gets each report. Returns the last one.
export async function watchTask(ns, name, taskId, onUpdate, { interval = 600, signal } = {}) {
  for (;;) {
    const task = await get(projectPath(ns, name, `/tasks/${encodeURIComponent(taskId)}`));
    onUpdate(task);
    // A cancelled task is REVOKED at once; its running files revert at their next step.
    const open = (task.meta.files || []).some((f) => f.state === "PENDING" || f.state === "STARTED");
    if (["SUCCESS", "FAILURE", "REVOKED"].includes(task.state) && !open) return task;
    if (signal && signal.aborted) return task;
    await new Promise((r) => setTimeout(r, interval));
  }
}
