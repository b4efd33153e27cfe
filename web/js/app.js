// app.js — the dashboard's entry point: hash router, page lifecycle and the header's token box.
//
// Routes: #/jobs (default), #/jobs/{id}, #/models, #/new; a query after the path
// (#/jobs?state=running) is merged into the page's params. Each page is an ES module loaded on
// first use that exports `render(root, params, ctx)` and may return a cleanup function.
// Lifecycle: on every navigation the previous page's cleanup runs first (it stops timers and
// long-polls), then the page gets a fresh root element. A render that finishes after the user
// has already moved on is cleaned up at once, so no timer of an old page survives.
//
// ctx = { api, token, navigate }: token is read live from localStorage; navigate(hash) changes
// the route. When the token is saved or forgotten, window receives a "prunelab:token" event
// (detail: the token or "") so pages can show or hide their write buttons without a reload.
//
// Failures to load or render a page are shown in the page (role=alert), never only logged.

import { api, getToken, setToken } from './api.js';
import { el, errorBox, announce } from './dom.js';

const ROUTES = [
  { re: /^\/jobs\/?$/, module: './jobs.js', title: 'Jobs', nav: '#/jobs' },
  { re: /^\/jobs\/(\d+)\/?$/, module: './job.js', title: 'Job', nav: '#/jobs', id: true },
  { re: /^\/models\/?$/, module: './models.js', title: 'Models', nav: '#/models' },
  { re: /^\/new\/?$/, module: './new.js', title: 'New experiment', nav: '#/new' },
];

let navSeq = 0; // increases on every navigation; a render holding an older number is stale
let cleanupFn = null;
let firstRender = true;

function navigate(hash) {
  const h = hash.startsWith('#') ? hash : `#${hash}`;
  if (location.hash === h) route();
  else location.hash = h;
}

const ctx = {
  api,
  get token() {
    return getToken();
  },
  navigate,
};

// location.hash -> { path, query }
function parseHash() {
  let raw = location.hash.replace(/^#/, '');
  try {
    raw = decodeURI(raw);
  } catch {
    // a malformed escape: route on the raw text (it will not match and shows "not found")
  }
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return { path: path || '/', query };
}

function setActiveNav(navHash) {
  for (const a of document.querySelectorAll('.main-nav a')) {
    if (a.getAttribute('href') === navHash) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function runCleanup() {
  const fn = cleanupFn;
  cleanupFn = null;
  if (typeof fn === 'function') {
    try {
      fn();
    } catch (err) {
      // a failing cleanup must not block the next page; report it in that page instead
      setTimeout(() => showGlobalError(err, 'Leaving the previous page failed'), 0);
    }
  }
}

function showGlobalError(err, prefix) {
  const page = document.getElementById('page');
  if (page) page.prepend(errorBox(err, prefix));
}

async function route() {
  const { path, query } = parseHash();
  if (path === '/' || path === '') {
    history.replaceState(null, '', '#/jobs');
    return route();
  }
  const seq = ++navSeq;
  runCleanup();
  const page = document.getElementById('page');
  const root = el('div', { class: 'page-root' });
  page.replaceChildren(root);
  page.setAttribute('aria-busy', 'true');

  const r = ROUTES.find((x) => x.re.test(path));
  if (!r) {
    setActiveNav('');
    document.title = 'Not found · prunelab';
    root.append(
      el('h1', { tabindex: '-1' }, 'Page not found'),
      el('p', null, `There is no page at #${path}. `, el('a', { href: '#/jobs' }, 'Go to the jobs list'), '.'),
    );
    page.setAttribute('aria-busy', 'false');
    return;
  }
  const params = Object.fromEntries(query.entries());
  if (r.id) params.id = path.match(r.re)[1];
  setActiveNav(r.nav);
  document.title = `${r.id ? `${r.title} ${params.id}` : r.title} · prunelab`;

  try {
    const mod = await import(r.module);
    if (seq !== navSeq) return;
    if (typeof mod.render !== 'function') throw new Error(`${r.module} does not export render()`);
    const cleanup = await mod.render(root, params, ctx);
    if (seq !== navSeq) {
      if (typeof cleanup === 'function') cleanup();
      return;
    }
    cleanupFn = typeof cleanup === 'function' ? cleanup : null;
  } catch (err) {
    if (seq !== navSeq) return;
    root.append(errorBox(err, `Cannot show the ${r.title.toLowerCase()} page`));
  } finally {
    if (seq === navSeq) page.setAttribute('aria-busy', 'false');
  }
  if (seq === navSeq && !firstRender) {
    // move keyboard and screen-reader focus to the new page's heading
    const h = root.querySelector('h1');
    if (h) {
      if (!h.hasAttribute('tabindex')) h.setAttribute('tabindex', '-1');
      h.focus({ preventScroll: true });
    }
  }
  firstRender = false;
}

// ------------------------------------------------------------------ token box

function tokenStateText(t) {
  return t ? `token saved (…${t.slice(-4)})` : 'no token: read-only';
}

function setupTokenBox() {
  const form = document.querySelector('[data-testid=token-form]');
  const input = document.querySelector('[data-testid=token-input]');
  const clearBtn = document.querySelector('[data-testid=token-clear]');
  const state = document.querySelector('[data-testid=token-state]');
  if (!form || !input || !state) return;
  const refresh = () => {
    const t = getToken();
    state.textContent = tokenStateText(t);
    form.classList.toggle('has-token', Boolean(t));
    if (clearBtn) clearBtn.hidden = !t;
  };
  const changed = (msg) => {
    refresh();
    announce(msg);
    window.dispatchEvent(new CustomEvent('prunelab:token', { detail: getToken() }));
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    if (!v) {
      input.focus();
      announce('Paste a token first (prunelabd user add NAME prints one).');
      return;
    }
    setToken(v);
    input.value = '';
    changed('Token saved in this browser.');
  });
  if (clearBtn) {
    clearBtn.addEventListener('click', () => {
      setToken('');
      input.value = '';
      changed('Token forgotten; the dashboard is read-only.');
    });
  }
  // another tab saved or removed the token
  window.addEventListener('storage', (ev) => {
    if (ev.key === 'prunelab.token') changed(tokenStateText(getToken()));
  });
  refresh();
}

window.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason && ev.reason.name === 'AbortError') {
    ev.preventDefault();
    return;
  }
  showGlobalError(ev.reason, 'Unexpected error');
});

setupTokenBox();
window.addEventListener('hashchange', route);
route();
