// models.js — the models page (#/models): registered checkpoints, upload and delete.
//
// Data: GET /api/v1/models (server/api_models.c): name, dataset, task ("image_classifier" or
// "causal_lm"; shown with the LM's vocabulary and whether its head is tied, charts.js modelTask),
// params, accuracy, owner, created_ms and "info" — the engine's `prunelab inspect` output, whose "layers" array gives each
// layer's real dims (d_inner E, d_state N, d_conv K, dt_rank R, mlp M, orig_index; a model a
// train job registered carries its cell result instead, with layers as {E, N, K, R, M}). A model
// whose list entry lacks info.layers is fetched on its own (GET /api/v1/models/NAME). A shrunk
// model therefore shows its new E/N/K per layer, and a lite model its original layer indices.
//
// Upload: PUT /api/v1/models/NAME with the file as the body (optional ?dataset=), with a
// <progress> fed by XMLHttpRequest upload events; the engine validates the checkpoint, and its
// error (400 invalid_model, 409 model_exists, 413 body_too_large ...) is shown in the form.
// Delete: confirm(), then DELETE /api/v1/models/NAME. Upload and delete need a token; without
// one the form explains that instead of failing on submit.

import { api as apiDefault, upload } from './api.js';
import { modelTask } from './charts.js';
import { el, clear, errorBox, announce, fmtPct, fmtNum, fmtTime, isoTime, fmtBytes } from './dom.js';

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

// One layer's dims from either shape the API gives: `prunelab inspect` (uploads: d_inner,
// d_state, d_conv, dt_rank, mlp, orig_index) or a cell result (trained models: E, N, K, R, M).
function dimsOf(l) {
  return {
    E: l.d_inner ?? l.E,
    N: l.d_state ?? l.N,
    K: l.d_conv ?? l.K,
    R: l.dt_rank ?? l.R,
    M: l.mlp ?? l.M ?? 0,
  };
}

function layerDims(layer) {
  const d = dimsOf(layer);
  const bits = [`E ${d.E ?? '?'}`, `N ${d.N ?? '?'}`, `K ${d.K ?? '?'}`];
  if (d.R != null) bits.push(`R ${d.R}`);
  bits.push(`M ${d.M}`);
  return bits.join(' · ');
}

// The per-layer dims list; the first layer's dims are the reference for marking shrunk ones.
function dimsList(info) {
  const layers = info && Array.isArray(info.layers) ? info.layers : null;
  if (!layers) return el('span', { class: 'muted' }, '\u2014');
  const first = dimsOf(layers[0] || {});
  return el(
    'ol',
    { class: 'dims', 'aria-label': `${layers.length} layers` },
    layers.map((l, i) => {
      const moved = l.orig_index != null && l.orig_index !== (l.index ?? i);
      const d = dimsOf(l);
      const differs = ['E', 'N', 'K', 'M'].some((k) => d[k] !== first[k]);
      return el(
        'li',
        { class: differs ? 'differs' : null },
        el('span', { class: 'layer-idx' }, `L${l.index ?? i}`),
        moved ? el('span', { class: 'muted' }, ` (was ${l.orig_index})`) : null,
        ` ${layerDims(l)}`,
      );
    }),
  );
}

export async function render(root, params, ctx) {
  const api = (ctx && ctx.api) || apiDefault;
  let stopped = false;
  let uploadCtrl = null;
  const errors = el('div', { class: 'errors' });
  const tbody = el('tbody');
  const table = el(
    'table',
    { class: 'data', 'data-testid': 'models-table' },
    el('caption', { class: 'visually-hidden' }, 'Registered models'),
    el(
      'thead',
      null,
      el(
        'tr',
        null,
        ['Name', 'Dataset', 'Task', 'Vocab', 'Head', 'Accuracy', 'Parameters', 'Layers (E · N · K · R · M)', 'Owner', 'Added', 'Actions'].map((t) =>
          el('th', { scope: 'col' }, t),
        ),
      ),
    ),
    tbody,
  );
  const empty = el('p', { class: 'empty', hidden: true }, 'No models yet: upload a checkpoint below, or run a train job.');

  // ---------------------------------------------------------------- upload form
  const nameIn = el('input', {
    id: 'model-name',
    name: 'name',
    required: true,
    maxlength: '64',
    pattern: '[A-Za-z0-9._\\-]{1,64}',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': 'model-name-help',
  });
  const fileIn = el('input', { id: 'model-file', name: 'file', type: 'file', required: true, accept: '.safetensors' });
  const dsIn = el('input', {
    id: 'model-dataset',
    name: 'dataset',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'from the checkpoint',
    'aria-describedby': 'model-dataset-help',
  });
  const bar = el('progress', { max: '1', value: '0', hidden: true, 'aria-label': 'Upload progress' });
  const barText = el('span', { class: 'muted small', 'aria-hidden': 'true' });
  const formErr = el('div', { class: 'errors' });
  const submit = el('button', { type: 'submit' }, 'Upload');
  const cancelUpload = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Stop');
  const tokenNote = el('p', { class: 'note', hidden: true }, 'Save an API token in the header to upload or delete models.');
  const form = el(
    'form',
    { class: 'card upload', 'data-testid': 'model-upload', novalidate: true },
    el('h2', null, 'Upload a checkpoint'),
    tokenNote,
    el(
      'div',
      { class: 'grid-fields' },
      el(
        'div',
        { class: 'field' },
        el('label', { for: 'model-name' }, 'Name'),
        nameIn,
        el('small', { id: 'model-name-help' }, 'Letters, digits, ".", "_" and "-", up to 64.'),
      ),
      el(
        'div',
        { class: 'field' },
        el('label', { for: 'model-file' }, 'Safetensors file'),
        fileIn,
      ),
      el(
        'div',
        { class: 'field' },
        el('label', { for: 'model-dataset' }, 'Dataset (optional)'),
        dsIn,
        el('small', { id: 'model-dataset-help' }, 'e.g. fashion-mnist; default: the one recorded in the checkpoint.'),
      ),
    ),
    el('div', { class: 'actions' }, submit, cancelUpload, bar, barText),
    formErr,
  );

  root.append(
    el('div', { class: 'page-head' }, el('h1', null, 'Models')),
    errors,
    el('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Models table', tabindex: '0' }, table),
    empty,
    form,
  );

  function syncToken() {
    const has = Boolean(ctx.token);
    tokenNote.hidden = has;
    submit.disabled = !has;
    for (const tr of tbody.querySelectorAll('tr[data-model]')) fillActions(tr);
  }

  // The delete button exists only while a token is stored.
  function fillActions(tr) {
    const td = tr.querySelector('td[data-col=actions]');
    const btn = td.querySelector('button[data-action=delete]');
    if (ctx.token && !btn) {
      const name = tr.dataset.model;
      td.append(
        el(
          'button',
          { type: 'button', class: 'small danger', 'data-action': 'delete', 'aria-label': `Delete model ${name}` },
          'Delete',
        ),
      );
    } else if (!ctx.token && btn) {
      btn.remove();
    }
  }

  function row(m) {
    const tr = el('tr', { 'data-model': m.name });
    const t = modelTask(m);
    tr.append(
      el('th', { scope: 'row', 'data-col': 'name' }, m.name),
      el('td', { 'data-col': 'dataset' }, m.dataset || '\u2014'),
      el('td', { 'data-col': 'task' }, t.task),
      el('td', { 'data-col': 'vocab', class: 'num' }, t.vocab),
      el('td', { 'data-col': 'head' }, t.head),
      el('td', { 'data-col': 'accuracy', class: 'num' }, fmtPct(m.accuracy)),
      el('td', { 'data-col': 'params', class: 'num' }, fmtNum(m.params)),
      el('td', { 'data-col': 'layers' }, dimsList(m.info)),
      el('td', { 'data-col': 'owner' }, m.owner || '\u2014'),
      el('td', { 'data-col': 'created' }, el('time', { datetime: isoTime(m.created_ms), title: isoTime(m.created_ms) }, fmtTime(m.created_ms))),
      el('td', { 'data-col': 'actions' }),
    );
    fillActions(tr);
    return tr;
  }

  async function load() {
    let data;
    try {
      data = await api('/api/v1/models');
    } catch (err) {
      if (!stopped) errors.replaceChildren(errorBox(err, 'Cannot load the models'));
      return;
    }
    if (stopped) return;
    const models = (data && data.models) || [];
    // per-layer dims: fetch the models whose list entry lacks them
    await Promise.all(
      models
        .filter((m) => !(m.info && Array.isArray(m.info.layers)))
        .map(async (m) => {
          try {
            const full = await api(`/api/v1/models/${encodeURIComponent(m.name)}`);
            if (full && full.info) m.info = full.info;
          } catch {
            // the row still shows what the list gave
          }
        }),
    );
    if (stopped) return;
    clear(errors);
    tbody.replaceChildren(...models.map(row));
    empty.hidden = models.length > 0;
    syncToken();
  }

  tbody.addEventListener('click', async (ev) => {
    const btn = ev.target.closest('button[data-action=delete]');
    if (!btn) return;
    const name = btn.closest('tr').dataset.model;
    if (!window.confirm(`Delete model "${name}"? Its checkpoint file is removed; jobs that used it keep their results.`)) return;
    btn.disabled = true;
    try {
      await api(`/api/v1/models/${encodeURIComponent(name)}`, { method: 'DELETE' });
      announce(`Model ${name} deleted.`);
      await load();
      const next = tbody.querySelector('button[data-action=delete]') || root.querySelector('h1');
      if (next) {
        if (next.tagName === 'H1') next.setAttribute('tabindex', '-1');
        next.focus();
      }
    } catch (err) {
      btn.disabled = false;
      if (!stopped) errors.replaceChildren(errorBox(err, `Cannot delete ${name}`));
    }
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(formErr);
    const name = nameIn.value.trim();
    const file = fileIn.files && fileIn.files[0];
    if (!ctx.token) {
      formErr.replaceChildren(errorBox(new Error('uploading needs an API token (save one in the header)')));
      return;
    }
    if (!NAME_RE.test(name) || name === '.' || name === '..') {
      formErr.replaceChildren(errorBox(Object.assign(new Error('names match [A-Za-z0-9._-]{1,64}'), { field: 'name' })));
      nameIn.focus();
      return;
    }
    if (!file) {
      formErr.replaceChildren(errorBox(Object.assign(new Error('choose a .safetensors file'), { field: 'file' })));
      fileIn.focus();
      return;
    }
    const q = dsIn.value.trim() ? `?dataset=${encodeURIComponent(dsIn.value.trim())}` : '';
    uploadCtrl = new AbortController();
    submit.disabled = true;
    cancelUpload.hidden = false;
    bar.hidden = false;
    bar.value = 0;
    barText.textContent = `0% of ${fmtBytes(file.size)}`;
    try {
      await upload(`/api/v1/models/${encodeURIComponent(name)}${q}`, file, {
        signal: uploadCtrl.signal,
        onProgress: (f) => {
          bar.value = f;
          barText.textContent = f < 1 ? `${Math.round(100 * f)}% of ${fmtBytes(file.size)}` : 'validating…';
        },
      });
      if (stopped) return;
      announce(`Model ${name} uploaded.`);
      form.reset();
      await load();
    } catch (err) {
      if (stopped) return;
      if (err && err.name === 'AbortError') announce('Upload stopped.');
      else formErr.replaceChildren(errorBox(err, `Upload of ${name} failed`));
    } finally {
      uploadCtrl = null;
      bar.hidden = true;
      barText.textContent = '';
      cancelUpload.hidden = true;
      syncToken();
    }
  });
  cancelUpload.addEventListener('click', () => {
    if (uploadCtrl) uploadCtrl.abort();
  });

  window.addEventListener('prunelab:token', syncToken);
  syncToken();
  await load();

  return () => {
    stopped = true;
    if (uploadCtrl) uploadCtrl.abort();
    window.removeEventListener('prunelab:token', syncToken);
  };
}
