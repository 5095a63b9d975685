// The HTTP API as the gallery uses it: one fetch wrapper that sends the API key, asks for one on a
// 401, and turns the service's error shape {"error": {code, message, detail}} into an ApiError.

const KEY_NAME = "lightbox.api_key";
const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail || {};
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
}

let pendingPrompt = null; // concurrent 401s share one dialog

export function askKey(reason) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-reason").textContent = reason;
  input.value = "";
  pendingPrompt = new Promise((resolve) => {
    dialog.addEventListener("close", function done() {
      dialog.removeEventListener("close", done);
      const key = input.value.trim();
      if (key) {
        forgetKey();
        const remember = document.getElementById("key-remember").checked;
        (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
      }
      pendingPrompt = null;
      document.getElementById("key-button").hidden = false;
      resolve(key);
    });
  });
  dialog.showModal();
  input.focus();
  return pendingPrompt;
}

/** "/tables/x/query" + ref/params -> a same-origin URL string under /api/v1. */
export function apiUrl(path, params) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of new URLSearchParams(params || "")) url.searchParams.set(k, v);
  return url.pathname + url.search;
}

async function toError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const err = body && body.error;
  if (err) return new ApiError(response.status, err.code, err.message, err.detail);
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`);
}

/** A Response for a 2xx/3xx answer; ApiError otherwise. Asks for a key (up to 3 times) on a 401. */
export async function request(path, { method = "GET", params, json, form } = {}) {
  const url = apiUrl(path, params);
  for (let attempt = 0; ; attempt++) {
    const headers = {};
    const key = getKey();
    if (key) headers["x-api-key"] = key;
    let body;
    if (json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    const response = await fetch(url, { method, headers, body });
    if (response.status === 401 && attempt < 3) {
      const entered = await askKey(key ? "That API key was not accepted; enter another." :
        "This service needs an API key to read its tables.");
      if (!entered) throw await toError(response);
      continue;
    }
    if (!response.ok) throw await toError(response);
    return response;
  }
}

export async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

// Images: a plain <img src> when the service is open (the browser's HTTP cache does the rest);
// with a key, <img> cannot send the header, so the bytes are fetched and shown as blob URLs,
// kept by URL so a redraw costs nothing.
const blobs = new Map();
const MAX_BLOBS = 3000;

export async function imageUrl(url) {
  if (!getKey()) return url;
  const known = blobs.get(url);
  if (known) return known;
  const response = await fetch(url, { headers: { "x-api-key": getKey() } });
  if (!response.ok) throw await toError(response);
  const local = URL.createObjectURL(await response.blob());
  blobs.set(url, local);
  if (blobs.size > MAX_BLOBS) {
    const [oldest, value] = blobs.entries().next().value;
    blobs.delete(oldest);
    URL.revokeObjectURL(value);
  }
  return local;
}

/** Show url in img; `double`, a rendering at twice the size, goes in srcset for high-DPI screens
 * (with a key, only when the screen needs it: each costs a fetch). */
export function setImage(img, url, double) {
  if (!getKey()) {
    if (double) img.srcset = `${url} 1x, ${double} 2x`;
    img.src = url;
    return;
  }
  const wanted = double && window.devicePixelRatio > 1 ? double : url;
  imageUrl(wanted).then((local) => { img.src = local; }, (err) => { img.alt = `${img.alt} (${err.message})`; });
}

export const t = (table) => `/tables/${encodeURIComponent(table)}`;
export const rowPath = (table, id) => `${t(table)}/rows/${id.split("/").map(encodeURIComponent).join("/")}`;
