// dom.js — small DOM and formatting helpers shared by the dashboard's pages.
//
// el() builds elements without innerHTML, so text from the API (model names, error messages,
// job owners) can never become markup. Formatting helpers return plain strings and accept
// null / undefined / non-finite values, which they render as an em dash.

// el(tag, attrs, ...children). attrs: "class", "text", "style" (object), "dataset" (object),
// on<event> functions (added as listeners), booleans (set when true, omitted when false),
// null/undefined values skipped, everything else set as an attribute. Children: nodes,
// strings/numbers (text nodes), arrays (flattened); null/undefined/false skipped.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
    else if (k === 'dataset' && typeof v === 'object') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, '');
    else if (k === 'value' && 'value' in node) node.value = String(v);
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
}

// Remove every child of node; returns node.
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// Replace the children of node with children (same rules as el()).
export function replace(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

// A visible error (role=alert) for an Error thrown by api(): message, plus code and field.
export function errorBox(err, prefix) {
  const msg = err && err.message ? err.message : String(err);
  const bits = [];
  if (err && err.code && err.code !== 'network' && err.code !== 'form') bits.push(err.code);
  if (err && err.field) bits.push(`field ${err.field}`);
  return el(
    'div',
    { class: 'alert', role: 'alert' },
    prefix ? el('strong', null, `${prefix}: `) : null,
    msg,
    bits.length ? el('span', { class: 'alert-code' }, ` (${bits.join(', ')})`) : null,
  );
}

// Announce text in the page's live status region (index.html #status).
export function announce(text) {
  const s = document.getElementById('status');
  if (!s) return;
  s.textContent = '';
  // a fresh text node after a tick makes screen readers announce a repeated message too
  setTimeout(() => {
    s.textContent = text;
  }, 30);
}

const DASH = '\u2014';

function finite(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

// 0.8123 -> "81.2%"
export function fmtPct(x, digits = 1) {
  return finite(x) ? `${(100 * x).toFixed(digits)}%` : DASH;
}

// Signed points: 0.012 -> "+1.2 pts"
export function fmtPts(x, digits = 1) {
  if (!finite(x)) return DASH;
  const v = 100 * x;
  return `${v > 0 ? '+' : v < 0 ? '\u2212' : '\u00b1'}${Math.abs(v).toFixed(digits)} pts`;
}

// 26500 -> "26,500"; non-integers keep `digits` significant digits.
export function fmtNum(x, digits = 4) {
  if (!finite(x)) return DASH;
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  return Number(x.toPrecision(digits)).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

// 26500 -> "26.5k", 1.2e6 -> "1.2M"
export function fmtCompact(x) {
  if (!finite(x)) return DASH;
  const a = Math.abs(x);
  if (a >= 1e9) return `${(x / 1e9).toFixed(a >= 1e10 ? 0 : 1)}G`;
  if (a >= 1e6) return `${(x / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${(x / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return String(Math.round(x));
}

// bytes -> "4.6 MiB"
export function fmtBytes(n) {
  if (!finite(n)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// epoch ms -> "2026-11-28 15:44" (local time)
export function fmtTime(ms) {
  if (!finite(ms) || ms <= 0) return DASH;
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// epoch ms -> ISO text (for title / datetime attributes)
export function isoTime(ms) {
  return finite(ms) && ms > 0 ? new Date(ms).toISOString() : '';
}

// milliseconds -> "850 ms", "42 s", "3 min 05 s", "2 h 07 min", "3 d 4 h"
export function fmtDuration(ms) {
  if (!finite(ms) || ms < 0) return DASH;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${pad(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${pad(m % 60)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// A job's or cell's run time: started..finished, or started..now while it runs.
export function runDuration(startedMs, finishedMs, nowMs = Date.now()) {
  if (!finite(startedMs) || startedMs <= 0) return DASH;
  const end = finite(finishedMs) && finishedMs > 0 ? finishedMs : nowMs;
  return fmtDuration(Math.max(0, end - startedMs));
}

// Debounce fn by ms; the returned function has .cancel().
export function debounce(fn, ms) {
  let t = null;
  const wrapped = (...args) => {
    if (t) clearTimeout(t);
    t = setTimeout(() => {
      t = null;
      fn(...args);
    }, ms);
  };
  wrapped.cancel = () => {
    if (t) clearTimeout(t);
    t = null;
  };
  return wrapped;
}

// A state badge: <span class="badge state-done">done</span>
export function stateBadge(state) {
  return el('span', { class: `badge state-${state || 'unknown'}` }, state || 'unknown');
}
