// api.js — the dashboard's one door to prunelabd's REST API (/api/v1).
//
// api(path, opts) wraps fetch: adds "Authorization: Bearer <token>" when a token is stored in
// localStorage ("prunelab.token"), encodes a plain-object body as JSON, returns the parsed JSON
// (or the text for non-JSON answers), and throws an Error carrying .status, .code, .field and
// .message from the server's {"error": {code, message, field}} body. Network failures throw
// with status 0 and code "network"; an aborted request rethrows the AbortError unchanged so
// callers can ignore it. upload() does the same for a raw file body with progress events
// (fetch cannot report upload progress, XMLHttpRequest can). apiAll() walks a paged listing.
//
// Nothing here touches the DOM.

const TOKEN_KEY = 'prunelab.token';

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(t) {
  const v = (t || '').trim();
  try {
    if (v) localStorage.setItem(TOKEN_KEY, v);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled (private mode): the token lives for this page only
  }
}

// An Error from an HTTP status and a parsed body (object, text or null).
function httpError(status, statusText, data) {
  const e = (data && typeof data === 'object' && data.error) || {};
  const text = typeof data === 'string' && data.trim() ? data.trim().slice(0, 200) : '';
  const err = new Error(e.message || text || `${status} ${statusText || 'error'}`);
  err.status = status;
  err.code = e.code || `http_${status}`;
  err.field = e.field ?? null;
  err.body = data;
  return err;
}

function networkError(cause) {
  const err = new Error(`cannot reach prunelabd (${cause && cause.message ? cause.message : 'network error'})`);
  err.status = 0;
  err.code = 'network';
  err.field = null;
  return err;
}

function isPlainBody(body) {
  return (
    body !== null &&
    typeof body === 'object' &&
    !(body instanceof Blob) &&
    !(body instanceof ArrayBuffer) &&
    !ArrayBuffer.isView(body) &&
    !(body instanceof FormData) &&
    !(body instanceof URLSearchParams)
  );
}

function parseBody(contentType, text) {
  if (/\bjson\b/i.test(contentType || '')) {
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

export async function api(path, { method = 'GET', body, headers, signal } = {}) {
  const h = new Headers(headers || {});
  const token = getToken();
  if (token && !h.has('Authorization')) h.set('Authorization', `Bearer ${token}`);
  let payload = body;
  if (isPlainBody(body)) {
    payload = JSON.stringify(body);
    if (!h.has('Content-Type')) h.set('Content-Type', 'application/json');
  }
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: payload, signal, cache: 'no-store' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw networkError(e);
  }
  let text;
  try {
    text = await res.text();
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw networkError(e);
  }
  const data = parseBody(res.headers.get('Content-Type'), text);
  if (!res.ok) throw httpError(res.status, res.statusText, data);
  return data;
}

// Every item of a paged listing (GET /api/v1/jobs/{id}/cells, results.json, /api/v1/jobs):
// requests path with limit (default the maximum, 1000) and each next_page_token as page_token
// until it is null, and returns the items under key of every page in order. opts as api()'s
// (signal); opts.limit sets the page size, opts.maxPages (default 10000) bounds the walk. get is
// the request function (api by default; the pages pass the ctx.api they were given).
export async function apiAll(path, key, opts = {}, get = api) {
  const { limit = 1000, maxPages = 10000, ...rest } = opts;
  const sep = path.includes('?') ? '&' : '?';
  const items = [];
  let token = '';
  for (let page = 0; page < maxPages; page++) {
    const q = `${sep}limit=${limit}${token ? `&page_token=${encodeURIComponent(token)}` : ''}`;
    const data = await get(path + q, rest);
    const got = data && Array.isArray(data[key]) ? data[key] : [];
    for (const it of got) items.push(it);
    token = data && typeof data.next_page_token === 'string' ? data.next_page_token : '';
    if (!token) return items;
  }
  throw new Error(`${path}: more than ${maxPages} pages`);
}

// PUT/POST a Blob (a File) with upload progress: onProgress(fraction 0..1) as bytes leave.
// Resolves to the parsed answer, rejects like api(). signal aborts the transfer.
export function upload(path, blob, { method = 'PUT', headers, signal, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    const token = getToken();
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    for (const [k, v] of Object.entries(headers || {})) xhr.setRequestHeader(k, v);
    if (onProgress) {
      xhr.upload.addEventListener('progress', (ev) => {
        if (ev.lengthComputable && ev.total > 0) onProgress(ev.loaded / ev.total);
      });
    }
    xhr.addEventListener('load', () => {
      const data = parseBody(xhr.getResponseHeader('Content-Type'), xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(httpError(xhr.status, xhr.statusText, data));
    });
    xhr.addEventListener('error', () => reject(networkError(new Error('upload failed'))));
    xhr.addEventListener('abort', () => reject(new DOMException('upload aborted', 'AbortError')));
    if (signal) {
      if (signal.aborted) {
        reject(new DOMException('upload aborted', 'AbortError'));
        return;
      }
      signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(blob);
  });
}
