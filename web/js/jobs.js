// jobs.js — the jobs page (#/jobs): a live table of every job with filters and actions.
//
// Data: GET /api/v1/jobs?state=&type=&limit= (server/api_jobs.c; newest first), polled every
// POLL_MS while the tab is visible (paused when hidden, resumed at once when shown again).
// Filters live in the hash query (#/jobs?state=running&type=ablation) so a filtered view can be
// bookmarked; changing one rewrites the hash with replaceState (no re-render) and fetches now.
//
// Rows are keyed by job id and updated in place (only changed text is touched), so keyboard
// focus on a row's button survives the refreshes. Cancel / retry buttons appear only while a
// token is stored, and only where they apply (cancel: queued or running; retry: failed cells).
// The returned cleanup stops the timer, aborts the request in flight and drops the listeners.

import { el, clear, errorBox, announce, fmtTime, isoTime, runDuration, stateBadge } from './dom.js';

const STATES = ['queued', 'running', 'done', 'failed', 'cancelled'];
const TYPES = ['train', 'ablation', 'sensitivity', 'joint', 'rsst', 'lite'];
const POLL_MS = 2000;
const PAGE = 50;
const PAGE_MAX = 1000; // STORE_PAGE_MAX

const COLUMNS = [
  ['id', 'Job'],
  ['type', 'Type'],
  ['model', 'Model'],
  ['owner', 'Owner'],
  ['state', 'State'],
  ['cells', 'Cells'],
  ['progress', 'Progress'],
  ['created', 'Created'],
  ['duration', 'Duration'],
  ['actions', 'Actions'],
];

function filterSelect(testid, label, values, current) {
  const id = `jobs-${testid}`;
  const sel = el(
    'select',
    { id, 'data-testid': testid, name: testid.replace('filter-', '') },
    el('option', { value: '' }, 'all'),
    values.map((v) => el('option', { value: v, selected: v === current }, v)),
  );
  return { sel, field: el('div', { class: 'field inline' }, el('label', { for: id }, label), sel) };
}

// Set node's text only when it differs (keeps screen readers and selection calm).
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export async function render(root, params, ctx) {
  let state = STATES.includes(params.state) ? params.state : '';
  let type = TYPES.includes(params.type) ? params.type : '';
  let limit = PAGE;
  let stopped = false;
  let timer = null;
  let inflight = null;
  const rows = new Map(); // job id -> { tr, td: {col: td}, actionsKey, job }

  const stateF = filterSelect('filter-state', 'State', STATES, state);
  const typeF = filterSelect('filter-type', 'Type', TYPES, type);
  const errors = el('div', { class: 'errors' });
  const updated = el('span', { class: 'muted small', 'aria-hidden': 'true' });
  const tbody = el('tbody');
  const table = el(
    'table',
    { class: 'data', 'data-testid': 'jobs-table' },
    el('caption', { class: 'visually-hidden' }, 'Jobs, newest first'),
    el('thead', null, el('tr', null, COLUMNS.map(([k, t]) => el('th', { scope: 'col', 'data-col': k }, t)))),
    tbody,
  );
  const empty = el('p', { class: 'empty', hidden: true });
  const moreBtn = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Show older jobs');

  root.append(
    el(
      'div',
      { class: 'page-head' },
      el('h1', null, 'Jobs'),
      el('a', { class: 'button', href: '#/new' }, 'New experiment'),
    ),
    el(
      'form',
      { class: 'filters', role: 'search', 'aria-label': 'Filter jobs', onsubmit: (e) => e.preventDefault() },
      stateF.field,
      typeF.field,
      updated,
    ),
    errors,
    el('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Jobs table', tabindex: '0' }, table),
    empty,
    el('div', { class: 'table-foot' }, moreBtn),
  );

  function query() {
    const q = new URLSearchParams();
    if (state) q.set('state', state);
    if (type) q.set('type', type);
    q.set('limit', String(limit));
    return q.toString();
  }

  function hashQuery() {
    const q = new URLSearchParams();
    if (state) q.set('state', state);
    if (type) q.set('type', type);
    const s = q.toString();
    return s ? `#/jobs?${s}` : '#/jobs';
  }

  function showError(err) {
    errors.replaceChildren(errorBox(err, 'Cannot load the jobs'));
  }

  function actionsFor(job) {
    const out = [];
    if (!ctx.token) return out;
    if (job.state === 'queued' || job.state === 'running') {
      out.push(
        el(
          'button',
          { type: 'button', class: 'small danger', 'data-action': 'cancel', 'aria-label': `Cancel job ${job.id}` },
          'Cancel',
        ),
      );
    }
    if (job.counts && job.counts.failed > 0) {
      out.push(
        el(
          'button',
          { type: 'button', class: 'small', 'data-action': 'retry', 'aria-label': `Retry the failed cells of job ${job.id}` },
          'Retry failed',
        ),
      );
    }
    return out;
  }

  function newRow(job) {
    const td = {};
    const tr = el('tr', { 'data-job-id': String(job.id) });
    for (const [k] of COLUMNS) {
      const cell = k === 'id' ? el('th', { scope: 'row', 'data-col': k }) : el('td', { 'data-col': k });
      td[k] = cell;
      tr.append(cell);
    }
    td.id.append(el('a', { href: `#/jobs/${job.id}` }, `#${job.id}`));
    const bar = el('progress', { max: '1', value: '0', 'aria-label': `Progress of job ${job.id}` });
    td.progress.append(bar, el('span', { class: 'progress-text' }));
    td.created.append(el('time'));
    return { tr, td, actionsKey: null, job };
  }

  function fillRow(r, job) {
    r.job = job;
    const c = job.counts || {};
    setText(r.td.type, job.type || '');
    setText(r.td.model, job.model || '\u2014');
    setText(r.td.owner, job.owner || '\u2014');
    const badgeKey = `${job.state}|${job.error || ''}`;
    if (r.td.state.dataset.key !== badgeKey) {
      r.td.state.dataset.key = badgeKey;
      r.td.state.replaceChildren(stateBadge(job.state));
      if (job.error) r.td.state.append(el('span', { class: 'cell-error' }, job.error));
    }
    const total = job.cells ?? 0;
    let cells = `${c.done ?? 0}/${total} done`;
    if (c.running) cells += ` · ${c.running} running`;
    if (c.failed) cells += ` · ${c.failed} failed`;
    setText(r.td.cells, cells);
    r.td.cells.classList.toggle('warn', Boolean(c.failed));
    const p = typeof job.progress === 'number' && Number.isFinite(job.progress) ? job.progress : 0;
    const bar = r.td.progress.querySelector('progress');
    if (bar.value !== p) bar.value = p;
    setText(r.td.progress.querySelector('.progress-text'), `${Math.round(100 * p)}%`);
    const t = r.td.created.querySelector('time');
    if (t.getAttribute('datetime') !== isoTime(job.created_ms)) {
      t.setAttribute('datetime', isoTime(job.created_ms));
      t.title = isoTime(job.created_ms);
      t.textContent = fmtTime(job.created_ms);
    }
    setText(r.td.duration, runDuration(job.started_ms, job.finished_ms));
    const key = `${ctx.token ? 1 : 0}|${job.state}|${c.failed > 0 ? 1 : 0}`;
    if (r.actionsKey !== key) {
      r.actionsKey = key;
      const hadFocus = r.td.actions.contains(document.activeElement);
      r.td.actions.replaceChildren(...actionsFor(job));
      if (hadFocus) (r.td.actions.querySelector('button') || r.td.id.querySelector('a')).focus();
    }
  }

  function update(data) {
    const jobs = (data && data.jobs) || [];
    const seen = new Set();
    const order = [];
    for (const job of jobs) {
      let r = rows.get(job.id);
      if (!r) {
        r = newRow(job);
        rows.set(job.id, r);
      }
      fillRow(r, job);
      seen.add(job.id);
      order.push(r.tr);
    }
    for (const [id, r] of rows) {
      if (!seen.has(id)) {
        r.tr.remove();
        rows.delete(id);
      }
    }
    // reorder only when needed: moving a row that holds focus would drop the focus
    const current = Array.from(tbody.children);
    if (current.length !== order.length || current.some((tr, i) => tr !== order[i])) tbody.replaceChildren(...order);
    const filtered = state || type;
    empty.hidden = jobs.length > 0;
    if (!jobs.length) {
      empty.replaceChildren(
        filtered
          ? 'No jobs match these filters.'
          : el('span', null, 'No jobs yet. ', el('a', { href: '#/new' }, 'Start an experiment'), '.'),
      );
    }
    moreBtn.hidden = !(data && data.next_page_token) || limit >= PAGE_MAX;
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function tick() {
    timer = null;
    if (stopped || document.hidden) return;
    if (inflight) inflight.abort();
    const ctrl = new AbortController();
    inflight = ctrl;
    try {
      const data = await ctx.api(`/api/v1/jobs?${query()}`, { signal: ctrl.signal });
      if (stopped || ctrl.signal.aborted) return;
      update(data);
      clear(errors);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (!stopped) showError(err);
    } finally {
      if (inflight === ctrl) inflight = null;
    }
    schedule();
  }

  function schedule() {
    if (stopped || document.hidden || timer || inflight) return;
    timer = setTimeout(tick, POLL_MS);
  }

  function refreshNow() {
    if (timer) clearTimeout(timer);
    timer = null;
    return tick();
  }

  function onFilter() {
    state = stateF.sel.value;
    type = typeF.sel.value;
    limit = PAGE;
    history.replaceState(null, '', hashQuery());
    refreshNow();
  }
  stateF.sel.addEventListener('change', onFilter);
  typeF.sel.addEventListener('change', onFilter);
  moreBtn.addEventListener('click', () => {
    limit = Math.min(PAGE_MAX, limit + PAGE);
    refreshNow();
  });

  tbody.addEventListener('click', async (ev) => {
    const btn = ev.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const tr = btn.closest('tr[data-job-id]');
    const id = tr && tr.dataset.jobId;
    if (!id) return;
    const action = btn.dataset.action;
    btn.disabled = true;
    try {
      const res = await ctx.api(`/api/v1/jobs/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
      clear(errors);
      announce(
        action === 'cancel'
          ? `Job ${id} cancelled.`
          : `Job ${id}: ${res && res.requeued != null ? res.requeued : 'the'} failed cell(s) requeued.`,
      );
    } catch (err) {
      if (stopped) return;
      errors.replaceChildren(errorBox(err, action === 'cancel' ? `Cannot cancel job ${id}` : `Cannot retry job ${id}`));
    } finally {
      btn.disabled = false;
    }
    if (!stopped) refreshNow();
  });

  const onVisibility = () => {
    if (document.hidden) {
      if (timer) clearTimeout(timer);
      timer = null;
    } else if (!timer && !inflight) {
      tick();
    }
  };
  const onToken = () => {
    for (const r of rows.values()) fillRow(r, r.job);
  };
  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('prunelab:token', onToken);

  await tick();

  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    timer = null;
    if (inflight) inflight.abort();
    inflight = null;
    document.removeEventListener('visibilitychange', onVisibility);
    window.removeEventListener('prunelab:token', onToken);
  };
}
