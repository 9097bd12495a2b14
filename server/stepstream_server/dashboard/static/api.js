// The API client: URLs relative to the page (so a reverse proxy's prefix works), the
// token kept for the tab, problem details as errors.

const TOKEN_KEY = "stepstream.token";

/** A 4xx/5xx answer; `body` is the problem details (RFC 9457) when the server sent some. */
export class Problem extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" ? body.detail || body.title : "";
    super(detail || `the server answered ${status}`);
    this.status = status;
    this.body = body && typeof body === "object" ? body : {};
  }

  get title() {
    return this.body.title || `Error ${this.status}`;
  }
}

/** The server could not be reached at all. */
export class Offline extends Error {}

/** The person closed the token prompt instead of entering a token. */
export class NoToken extends Error {
  constructor() {
    super("this server needs an access token");
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function url(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI).href;
}

export function wsUrl(path, params = {}) {
  const target = new URL(url(path));
  target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      target.searchParams.set(key, String(value));
    }
  }
  if (token()) target.searchParams.set("token", token());
  return target.href;
}

let prompt = null; // one prompt at a time, however many requests were refused

/**
 * Ask for the token (after a 401 or a 4401 close); resolves once one is entered,
 * rejects with NoToken when the dialog is dismissed.
 */
export function askToken() {
  if (prompt) return prompt;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const hint = document.getElementById("token-hint");
  const refused = Boolean(token());
  hint.textContent = refused
    ? "The server refused the token. Enter it again."
    : "This server needs an access token (the one it was started with: STEPSTREAM_TOKEN, --token-file or --token).";
  input.value = "";
  prompt = new Promise((resolve, reject) => {
    dialog.addEventListener(
      "close",
      () => {
        prompt = null;
        const entered = input.value.trim();
        input.value = "";
        if (dialog.returnValue === "save" && entered) {
          sessionStorage.setItem(TOKEN_KEY, entered);
          resolve(entered);
        } else {
          reject(new NoToken());
        }
      },
      { once: true }
    );
  });
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
  return prompt;
}

/** JSON in, JSON out; asks for the token on 401 and tries again with it. */
export async function request(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new Offline(`cannot reach the server (${error.message})`);
    }
    if (response.status === 401) {
      await askToken();
      continue;
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) throw new Problem(response.status, data);
    return data;
  }
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
