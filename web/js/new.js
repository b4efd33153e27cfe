// new.js — the new-experiment page (#/new): a form for every job type, with presets for the
// design notes' experiments (/work/shared/SEED.md "Experiment plan") and the three RSST stages
// (bench/specs/*.json), a live cell count, and submission.
//
// The form is turned into the same JSON body curl users POST to /api/v1/jobs (server/jobspec.h
// documents every field). While the user edits, the body is sent, debounced, to
// POST /api/v1/jobs?dry_run=1, which validates it exactly like a submission and answers
// {"dry_run": true, "cells": N}; N goes to output[data-testid=cell-count], and a refusal (with
// its field) to [data-testid=form-error] (role=alert), with aria-invalid on the named control.
// The dataset field suggests the datasets of the chosen model's task (GET /api/v1/datasets; a causal
// LM recorded without a dataset gets the first token dataset filled in, since its jobs need one).
// Submitting POSTs the body and navigates to #/jobs/ID. Both calls need a token (writes always
// do); without one the page says so instead of failing.
//
// Presets fill the controls; the user may edit anything afterwards. The RSST and lite specs are
// edited as JSON text; the dry run parses them with the engine's own parser, so a typo inside
// them is named (e.g. spec.prune[1].rate) before anything is submitted.

import { el, clear, errorBox, announce, debounce } from './dom.js';

const TYPES = ['ablation', 'sensitivity', 'joint', 'rsst', 'lite', 'train'];

// The names the form offers (components, granularities, criteria) come from the service:
// GET /api/v1/vocabulary serves spec/vocab.h, the one table both processes parse with. The
// notes' names are the checkbox values (jobspec accepts both); the note names the canonical
// component, its weights and whether the notes advise against pruning it.
let vocabulary = null;
async function loadVocabulary(ctx) {
  if (!vocabulary) vocabulary = await ctx.api('/api/v1/vocabulary');
  return vocabulary;
}

function componentChoices(vocab) {
  return vocab.components.map((c) => {
    const parts = [c.alias === c.name ? c.tensors : `${c.name}: ${c.tensors}`];
    if (!c.recommended) parts.push('not recommended');
    return [c.alias, parts.join(', ')];
  });
}

// bench/specs/stage1_rsst.json: unstructured 0.7 on out_proj, mlp, gate with RSST
const STAGE1_SPEC = {
  prune: [
    { component: 'linear_out', rate: 0.7 },
    { component: 'mlp', rate: 0.7 },
    { component: 'linear_gate', rate: 0.7 },
  ],
  rsst: { reg_steps: 600, lambda_max: 1.0, power: 2, lr: 1e-3 },
  finetune: { steps: 900, lr: 5e-4 },
};
// bench/specs/stage2_hybrid.json: a granularity per component
const STAGE2_SPEC = {
  prune: [
    { component: 'linear_out', granularity: 'structured', rate: 0.5 },
    { component: 'mlp', granularity: 'structured', rate: 0.7 },
    { component: 'linear_gate', granularity: 'unstructured', rate: 0.6 },
    { component: 'linear_in', granularity: 'structured', rate: 0.25 },
  ],
};
// bench/specs/stage3_lite_L*.json: the lite target; n_layers follows the model (2/3 of it)
function stage3Spec(layers) {
  const n = layers > 0 ? Math.max(1, Math.round((2 * layers) / 3)) : 2;
  return {
    target: { expand: 1, d_conv: 2, d_state: 8, mlp_ratio: 1, n_layers: n },
    finetune: { epochs: 2, lr: 0.002 },
  };
}

const PRESETS = {
  ablation: {
    label: 'Ablation grid: 6 components × 4 rates',
    help: 'The notes\u2019 experiment 1: prune one component at a time at 0.3, 0.5, 0.7 and 0.9, evaluate each cell against the baseline.',
    type: 'ablation',
    components: ['linear_out', 'mlp', 'linear_gate', 'linear_in', 'conv1d', 'linear_B_C'],
    rates: '0.3, 0.5, 0.7, 0.9',
  },
  sensitivity: {
    label: 'Per-layer sensitivity at 0.7',
    help: 'The notes\u2019 experiment 2: prune only one layer at a time at 0.7; sensitivity = baseline accuracy \u2212 pruned accuracy.',
    type: 'sensitivity',
    components: ['linear_out', 'mlp', 'linear_gate'],
    rates: '0.7',
    layers: 'all',
  },
  joint: {
    label: 'Joint pruning comparison',
    help: 'The notes\u2019 experiment 3: several components pruned together; compare accuracy, sparsity, parameters and latency.',
    type: 'joint',
    configs: [
      { linear_out: 0.7, mlp: 0.7 },
      { linear_out: 0.7, mlp: 0.7, linear_gate: 0.5 },
      { linear_out: 0.8, mlp: 0.8, linear_in: 0.3 },
    ],
  },
  stage1: {
    label: 'Stage 1: unstructured 0.7 + RSST',
    help: 'out_proj, MLP and gate at a 0.7 rate; 600 regularisation steps with \u03bb(t) = (t/T)\u00b2, then 900 fine-tune steps (bench/specs/stage1_rsst.json).',
    type: 'rsst',
    spec: () => STAGE1_SPEC,
  },
  stage2: {
    label: 'Stage 2: hybrid granularity',
    help: 'linear_out structured 0.5, MLP structured 0.7, gate unstructured 0.6, linear_in structured 0.25 (bench/specs/stage2_hybrid.json).',
    type: 'rsst',
    spec: () => STAGE2_SPEC,
  },
  stage3: {
    label: 'Stage 3: lite model',
    help: 'Build a lite model (expand 1, d_conv 2, d_state 8, mlp_ratio 1, 2/3 of the layers) from the most important units, then fine-tune (bench/specs/stage3_lite_L*.json).',
    type: 'lite',
    spec: (layers) => stage3Spec(layers),
  },
  custom: { label: 'Custom', help: 'Set every field yourself.' },
};

// Parse "0.3, 0.5" -> [0.3, 0.5]; throws a field error.
function numberList(text, field, { integer = false } = {}) {
  const parts = text
    .split(/[\s,;]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  return parts.map((p, i) => {
    const v = Number(p);
    if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      throw fieldError(`${field}[${i}]`, `${field}: '${p}' is not ${integer ? 'an integer' : 'a number'}`);
    }
    return v;
  });
}

function fieldError(field, message) {
  return Object.assign(new Error(message), { field, code: 'form' });
}

function parseJson(text, field) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fieldError(field, `${field}: not valid JSON (${e.message})`);
  }
}

export async function render(root, params, ctx) {
  let stopped = false;
  let dryCtrl = null;
  let models = [];
  let datasets = []; // GET /api/v1/datasets: {name, kind: image | tokens | text, available, ...}
  const vocab = await loadVocabulary(ctx);

  // ---------------------------------------------------------------- controls
  const ctl = {};
  const field = (id, label, control, help) => {
    if (help) control.setAttribute('aria-describedby', `nj-${id}-help`);
    return el(
      'div',
      { class: 'field', 'data-field': id },
      el('label', { for: `nj-${id}` }, label),
      control,
      help ? el('small', { id: `nj-${id}-help` }, help) : null,
    );
  };
  const input = (name, attrs = {}) => {
    const node = el('input', { id: `nj-${name}`, name, autocomplete: 'off', spellcheck: 'false', ...attrs });
    ctl[name] = node;
    return node;
  };
  const select = (name, options, attrs = {}) => {
    const node = el(
      'select',
      { id: `nj-${name}`, name, ...attrs },
      options.map(([v, t]) => el('option', { value: v }, t)),
    );
    ctl[name] = node;
    return node;
  };

  const presetSel = select(
    'preset',
    Object.entries(PRESETS).map(([k, p]) => [k, p.label]),
    { 'aria-describedby': 'nj-preset-help' },
  );
  const presetHelp = el('small', { id: 'nj-preset-help' });
  const typeSel = select('type', TYPES.map((t) => [t, t]));
  const modelSel = select('model', []);
  const modelNote = el('small', { id: 'nj-model-help' });
  modelSel.setAttribute('aria-describedby', 'nj-model-help');

  const compBoxes = componentChoices(vocab).map(([v, note]) => {
    const id = `nj-comp-${v}`;
    const box = el('input', { type: 'checkbox', id, name: 'component', value: v });
    return {
      v,
      box,
      label: el('label', { for: id, class: 'check' }, box, ` ${v} `, el('span', { class: 'muted small' }, `(${note})`)),
    };
  });
  const compSet = el(
    'fieldset',
    { class: 'components', 'data-field': 'components' },
    el('legend', null, 'Components'),
    el('div', { class: 'checks' }, compBoxes.map((c) => c.label)),
  );

  const rates = input('rates', { inputmode: 'decimal', placeholder: '0.3, 0.5, 0.7, 0.9' });
  const layers = input('layers', { placeholder: 'all or 0, 1, 5' });
  const seeds = input('seeds', { inputmode: 'numeric', placeholder: 'default: 1' });
  const ftSteps = input('finetune_steps', { type: 'number', min: '0', step: '1', placeholder: '0 (none)' });
  const ftLr = input('finetune_lr', { inputmode: 'decimal', placeholder: 'engine default' });
  const gran = select('granularity', [['', 'default (unstructured)'], ...vocab.granularities.map((g) => [g, g])]);
  const crit = select('criterion', [['', 'default (magnitude)'], ...vocab.criteria.map((c) => [c.name, c.name])]);
  const configs = el('textarea', { id: 'nj-configs', name: 'configs', rows: '6', spellcheck: 'false', class: 'code' });
  ctl.configs = configs;
  const spec = el('textarea', { id: 'nj-spec', name: 'spec', rows: '10', spellcheck: 'false', class: 'code' });
  ctl.spec = spec;
  const trainName = input('name', { placeholder: 'e.g. fmnist-small' });
  // the dataset of every job type: empty = the model's recorded one; the suggestions (a
  // <datalist> of GET /api/v1/datasets) follow the model's task, token datasets for a causal LM
  const trainDataset = input('dataset', { placeholder: 'fashion-mnist', list: 'nj-dataset-list' });
  const datasetList = el('datalist', { id: 'nj-dataset-list' });
  const trainPreset = select('train_preset', vocab.presets.map((p) => [p, p]));
  const trainEpochs = input('epochs', { type: 'number', min: '1', step: '1', placeholder: 'engine default' });
  const evalSamples = input('eval_samples', { type: 'number', min: '1', step: '1', placeholder: 'whole test split' });
  const priority = input('priority', { type: 'number', min: '-1000', max: '1000', step: '1', value: '0' });

  const count = el('output', { 'data-testid': 'cell-count', for: 'nj-type nj-rates nj-layers nj-seeds', 'aria-live': 'polite' }, '\u2014');
  const formError = el('div', { 'data-testid': 'form-error', class: 'form-error' });
  const submit = el('button', { type: 'submit' }, 'Submit experiment');
  const tokenNote = el('p', { class: 'note', hidden: true }, 'Save an API token in the header: the cell count and submission need one.');

  const sections = {
    grid: el(
      'div',
      { class: 'section', 'data-types': 'ablation sensitivity joint' },
      compSet,
      el(
        'div',
        { class: 'grid-fields' },
        field('rates', 'Rates (comma separated)', rates, 'Fractions in [0, 1); sensitivity takes one.'),
        field('layers', 'Layers', layers, '"all" or layer indices, for sensitivity.'),
        field('seeds', 'Seeds', seeds, 'Comma separated; each seed repeats the grid (ablation).'),
        field('granularity', 'Granularity', gran),
        field('criterion', 'Criterion', crit),
        field('finetune_steps', 'Fine-tune steps', ftSteps, 'After pruning, with the masks fixed.'),
        field('finetune_lr', 'Fine-tune learning rate', ftLr),
      ),
    ),
    joint: el(
      'div',
      { class: 'section', 'data-types': 'joint' },
      field('configs', 'Configurations (JSON list of {component: rate})', configs, 'One cell per configuration.'),
    ),
    spec: el(
      'div',
      { class: 'section', 'data-types': 'rsst lite' },
      field('spec', 'Spec (JSON)', spec, 'The RSST or lite spec object; the engine checks it when the cell runs.'),
    ),
    data: el(
      'div',
      { class: 'section grid-fields', 'data-types': 'ablation sensitivity joint rsst lite train' },
      field('dataset', 'Dataset', trainDataset, 'Empty: the model\u2019s own dataset.'),
      datasetList,
    ),
    train: el(
      'div',
      { class: 'section grid-fields', 'data-types': 'train' },
      field('name', 'New model name', trainName),
      field('train_preset', 'Size preset', trainPreset),
      field('epochs', 'Epochs', trainEpochs),
    ),
  };

  const form = el(
    'form',
    { class: 'card new-job', 'data-testid': 'new-job-form', novalidate: true },
    tokenNote,
    el(
      'div',
      { class: 'grid-fields' },
      el('div', { class: 'field wide' }, el('label', { for: 'nj-preset' }, 'Preset'), presetSel, presetHelp),
      field('type', 'Job type', typeSel),
      el('div', { class: 'field' }, el('label', { for: 'nj-model' }, 'Model'), modelSel, modelNote),
    ),
    sections.grid,
    sections.joint,
    sections.spec,
    sections.data,
    sections.train,
    el(
      'div',
      { class: 'grid-fields' },
      field('eval_samples', 'Evaluation samples', evalSamples, 'Cap the test samples per cell for a quick run.'),
      field('priority', 'Priority', priority, 'Higher runs first, -1000..1000.'),
    ),
    el(
      'div',
      { class: 'submit-row' },
      el('p', { class: 'count' }, 'Cells: ', count),
      submit,
    ),
    formError,
  );

  root.append(el('div', { class: 'page-head' }, el('h1', null, 'New experiment')), form);

  // ---------------------------------------------------------------- behaviour
  function modelLayers() {
    const m = models.find((x) => x.name === modelSel.value);
    const info = m && m.info;
    if (!info) return 0;
    if (info.config && info.config.n_layers) return info.config.n_layers;
    return Array.isArray(info.layers) ? info.layers.length : 0;
  }

  // The dataset suggestions for the chosen model's task; a causal LM recorded without a dataset
  // gets the first token dataset filled in (its jobs need one), unless the user typed one.
  let datasetTyped = false;
  function syncDataset() {
    const m = models.find((x) => x.name === modelSel.value);
    const lm = Boolean(m && m.task === 'causal_lm');
    const fits = datasets.filter((d) => d.available !== false && (lm ? d.kind === 'tokens' || d.kind === 'text' : d.kind === 'image'));
    datasetList.replaceChildren(...fits.map((d) => el('option', { value: d.name })));
    trainDataset.placeholder = (m && m.dataset) || (fits[0] && fits[0].name) || '';
    if (datasetTyped) return;
    const own = m && m.dataset;
    trainDataset.value = lm && !own && fits.length ? fits[0].name : '';
  }

  function showSections() {
    const t = typeSel.value;
    for (const s of Object.values(sections)) s.hidden = !s.dataset.types.split(' ').includes(t);
    // within the grid section, show what the type uses
    const uses = {
      rates: t === 'ablation' || t === 'sensitivity',
      layers: t === 'sensitivity',
      seeds: t === 'ablation',
    };
    compSet.hidden = t === 'joint';
    for (const [k, on] of Object.entries(uses)) form.querySelector(`[data-field=${k}]`).hidden = !on;
    modelSel.required = t !== 'train';
  }

  function applyPreset(name) {
    const p = PRESETS[name];
    presetHelp.textContent = p ? p.help : '';
    if (!p || name === 'custom') return;
    typeSel.value = p.type;
    const comps = new Set(p.components || []);
    for (const c of compBoxes) c.box.checked = comps.has(c.v);
    rates.value = p.rates || '';
    layers.value = p.layers || '';
    seeds.value = '';
    configs.value = p.configs ? JSON.stringify(p.configs, null, 2) : '';
    spec.value = p.spec ? JSON.stringify(p.spec(modelLayers()), null, 2) : '';
    showSections();
  }

  // The POST body from the controls; throws a field error for what the server could not parse.
  function buildBody() {
    const t = typeSel.value;
    const body = { type: t };
    if (t !== 'train' || modelSel.value) {
      if (!modelSel.value) throw fieldError('model', 'model: choose a model (upload one on the Models page)');
      body.model = modelSel.value;
    }
    const comps = compBoxes.filter((c) => c.box.checked).map((c) => c.v);
    const ft = {};
    if (ftSteps.value.trim()) ft.steps = numberList(ftSteps.value, 'finetune.steps', { integer: true })[0];
    if (ftLr.value.trim()) ft.lr = numberList(ftLr.value, 'finetune.lr')[0];
    if (t === 'ablation') {
      body.components = comps;
      body.rates = numberList(rates.value, 'rates');
      if (seeds.value.trim()) body.seeds = numberList(seeds.value, 'seeds', { integer: true });
    } else if (t === 'sensitivity') {
      body.components = comps;
      const r = numberList(rates.value, 'rate');
      if (r.length !== 1) throw fieldError('rate', 'rate: a sensitivity sweep takes exactly one rate');
      body.rate = r[0];
      const l = layers.value.trim();
      body.layers = !l || l === 'all' ? 'all' : numberList(l, 'layers', { integer: true });
    } else if (t === 'joint') {
      body.configs = parseJson(configs.value || '[]', 'configs');
    } else if (t === 'rsst' || t === 'lite') {
      body.spec = parseJson(spec.value || '{}', 'spec');
    } else if (t === 'train') {
      body.name = trainName.value.trim();
      body.preset = trainPreset.value;
      if (trainEpochs.value.trim()) body.epochs = numberList(trainEpochs.value, 'epochs', { integer: true })[0];
    }
    if (trainDataset.value.trim()) body.dataset = trainDataset.value.trim();
    if (['ablation', 'sensitivity', 'joint'].includes(t)) {
      if (gran.value) body.granularity = gran.value;
      if (crit.value) body.criterion = crit.value;
      if (Object.keys(ft).length) body.finetune = ft;
    }
    if (evalSamples.value.trim()) body.eval = { max_samples: numberList(evalSamples.value, 'eval.max_samples', { integer: true })[0] };
    const pr = priority.value.trim();
    if (pr && pr !== '0') body.priority = numberList(pr, 'priority', { integer: true })[0];
    return body;
  }

  // The control an error's field names ("rates[1]" -> rates input, "configs[0].mlp" -> configs).
  function controlFor(fieldName) {
    if (!fieldName) return null;
    const head = String(fieldName).split(/[[.]/)[0];
    const map = {
      rates: rates,
      rate: rates,
      layers: layers,
      seeds: seeds,
      components: compBoxes[0].box,
      configs: configs,
      spec: spec,
      model: modelSel,
      name: trainName,
      dataset: trainDataset,
      epochs: trainEpochs,
      finetune: ftSteps,
      eval: evalSamples,
      priority: priority,
      granularity: gran,
      criterion: crit,
    };
    return map[head] || null;
  }

  function clearInvalid() {
    for (const n of form.querySelectorAll('[aria-invalid]')) n.removeAttribute('aria-invalid');
    compSet.classList.remove('invalid');
  }

  function showError(err, prefix) {
    clearInvalid();
    formError.replaceChildren(errorBox(err, prefix));
    const c = controlFor(err && err.field);
    if (c) {
      c.setAttribute('aria-invalid', 'true');
      if (c === compBoxes[0].box) compSet.classList.add('invalid');
    }
  }

  async function dryRun() {
    if (stopped) return;
    if (dryCtrl) dryCtrl.abort();
    let body;
    try {
      body = buildBody();
    } catch (err) {
      count.value = '\u2014';
      showError(err);
      return;
    }
    if (!ctx.token) {
      count.value = '\u2014';
      clearInvalid();
      clear(formError);
      return;
    }
    const c = new AbortController();
    dryCtrl = c;
    count.value = '…';
    try {
      const res = await ctx.api('/api/v1/jobs?dry_run=1', { method: 'POST', body, signal: c.signal });
      if (stopped || c.signal.aborted) return;
      count.value = String(res.cells);
      clearInvalid();
      clear(formError);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (stopped) return;
      count.value = '\u2014';
      showError(err);
    } finally {
      if (dryCtrl === c) dryCtrl = null;
    }
  }
  const dryRunSoon = debounce(dryRun, 350);

  function syncToken() {
    tokenNote.hidden = Boolean(ctx.token);
    submit.disabled = !ctx.token;
    dryRunSoon();
  }

  presetSel.addEventListener('change', () => {
    applyPreset(presetSel.value);
    dryRunSoon();
  });
  typeSel.addEventListener('change', () => {
    showSections();
    dryRunSoon();
  });
  modelSel.addEventListener('change', () => {
    syncDataset();
    // the lite target's layer count follows the model
    if (presetSel.value === 'stage3') applyPreset('stage3');
    dryRunSoon();
  });
  form.addEventListener('input', (ev) => {
    if (ev.target === trainDataset) datasetTyped = trainDataset.value.trim() !== '';
    if (ev.target !== presetSel && ev.target !== typeSel && ev.target !== modelSel) dryRunSoon();
  });
  form.addEventListener('change', (ev) => {
    if (ev.target.type === 'checkbox' || ev.target.tagName === 'SELECT') {
      if (ev.target !== presetSel && ev.target !== typeSel && ev.target !== modelSel) dryRunSoon();
    }
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    dryRunSoon.cancel();
    if (dryCtrl) dryCtrl.abort();
    if (!ctx.token) {
      showError(new Error('submitting needs an API token (save one in the header)'));
      return;
    }
    let body;
    try {
      body = buildBody();
    } catch (err) {
      showError(err);
      const c = controlFor(err.field);
      if (c) c.focus();
      return;
    }
    submit.disabled = true;
    try {
      const res = await ctx.api('/api/v1/jobs', { method: 'POST', body });
      if (stopped) return;
      announce(`Job ${res.id} submitted: ${res.cells} cell(s).`);
      ctx.navigate(`#/jobs/${res.id}`);
    } catch (err) {
      if (stopped) return;
      showError(err, 'Not submitted');
      const c = controlFor(err.field);
      if (c) c.focus();
    } finally {
      if (!stopped) submit.disabled = !ctx.token;
    }
  });

  window.addEventListener('prunelab:token', syncToken);

  // ---------------------------------------------------------------- models, then the preset
  try {
    const data = await ctx.api('/api/v1/models');
    models = (data && data.models) || [];
  } catch (err) {
    formError.replaceChildren(errorBox(err, 'Cannot load the models'));
  }
  try {
    const data = await ctx.api('/api/v1/datasets');
    datasets = (data && data.datasets) || [];
  } catch (err) {
    datasets = []; // suggestions only: the form works without them
  }
  if (stopped) return undefined;
  modelSel.replaceChildren(
    el('option', { value: '' }, models.length ? '(choose a model)' : '(no models yet)'),
    ...models.map((m) => el('option', { value: m.name }, m.dataset ? `${m.name} — ${m.dataset}` : m.name)),
  );
  const wanted = params.model && models.some((m) => m.name === params.model) ? params.model : models[0] && models[0].name;
  if (wanted) modelSel.value = wanted;
  if (!models.length) {
    modelNote.replaceChildren('Upload a checkpoint on the ', el('a', { href: '#/models' }, 'Models page'), ' or run a train job first.');
  } else {
    modelNote.textContent = 'The baseline every cell starts from.';
  }
  const preset = PRESETS[params.preset] ? params.preset : 'ablation';
  presetSel.value = preset;
  applyPreset(preset);
  syncDataset();
  showSections();
  syncToken();

  return () => {
    stopped = true;
    dryRunSoon.cancel();
    if (dryCtrl) dryCtrl.abort();
    window.removeEventListener('prunelab:token', syncToken);
  };
}
