/* charts.js — pure data shaping for the job page (web/js/job.js).
 *
 * What: turns the cells of GET /api/v1/jobs/{id}/cells into what the charts and the cell table
 * draw — the ablation grid (component x rate), accuracy-vs-rate lines, per-layer sensitivity
 * bars, the Pareto front of accuracy against a cost, RSST per-round and train per-epoch series,
 * flat table rows with a sort comparator, and number formatting.
 * Assumptions: a cell is {idx, state, attempts, progress, phase, spec, result, error,
 * started_ms, finished_ms} as server/api_jobs.c writes it; spec holds the grid coordinates
 * (component | components, rate, layer, seed, config) and result the engine's metrics
 * (engine/cell.h; sparsity may be a number or the {"overall": {"sparsity": x}, ...} report).
 * Only cells in state "done" contribute values: queued, running, failed and cancelled cells
 * give null. Causal LM cells (result.task "causal_lm", result.metric "perplexity", see the LM
 * contract) are drawn in perplexity, lower is better: HEADLINES and headlineOf say which metric a
 * job's charts show, heatmapColors keeps red = worse for either direction. Every function is pure (no DOM, no Plotly, no I/O) and returns fresh objects the
 * caller owns; inputs are never modified, so node:test covers them directly. */

export const FINISHED_STATES = ['done', 'failed', 'cancelled'];

export function isFinished(state) {
  return FINISHED_STATES.includes(state);
}

/* A finite number, else null (null, undefined, NaN, Infinity, strings and objects). */
export function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/* The overall sparsity of a result: a plain number, or the report's overall.sparsity
 * (falling back to its weights.sparsity). */
export function sparsityOf(result) {
  if (!result) return null;
  const s = result.sparsity;
  if (typeof s === 'number') return num(s);
  if (s && typeof s === 'object') {
    if (s.overall && typeof s.overall === 'object') return num(s.overall.sparsity);
    if ('sparsity' in s) return num(s.sparsity);
    if (s.weights && typeof s.weights === 'object') return num(s.weights.sparsity);
  }
  return null;
}

/* Metric keys understood by metricOf, with their display label and format kind. */
export const METRICS = {
  accuracy: { label: 'Accuracy', kind: 'pct' },
  delta_accuracy: { label: 'Δ accuracy', kind: 'delta' },
  loss: { label: 'Loss', kind: 'num' },
  sparsity: { label: 'Sparsity', kind: 'pct' },
  removed: { label: 'Params removed', kind: 'pct' },
  params: { label: 'Params', kind: 'int' },
  params_nonzero: { label: 'Non-zero params', kind: 'int' },
  latency_ms_per_batch: { label: 'Latency (ms/batch)', kind: 'num' },
  samples_per_s: { label: 'Samples/s', kind: 'num' },
  speedup: { label: 'Speedup', kind: 'num' },
  flops_per_sample: { label: 'FLOPs/sample', kind: 'num' },
  wall_s: { label: 'Wall time', kind: 'dur' },
  perplexity: { label: 'Perplexity', kind: 'num' },
  baseline_perplexity: { label: 'Baseline perplexity', kind: 'num' },
  delta_perplexity: { label: 'Δ perplexity', kind: 'signed' },
  bits_per_token: { label: 'Bits/token', kind: 'num' },
  bits_per_byte: { label: 'Bits/byte', kind: 'num' },
  tokens_per_s: { label: 'Tokens/s', kind: 'num' },
};

/* The share of the baseline's non-zero parameters a result no longer has:
 * 1 - params_nonzero / params_baseline_nonzero. Unlike sparsity (zeros in the produced model)
 * it also counts weights removed physically by structured shrinking. Null when unknown. */
export function removedFraction(result) {
  const nz = num(result && result.params_nonzero);
  const base = num(result && result.params_baseline_nonzero);
  return nz !== null && base !== null && base > 0 ? 1 - nz / base : null;
}

/* A metric of a finished cell, or null (cell not done, metric absent or not finite). Keys are
 * result fields, plus "sparsity" (sparsityOf) and "removed" (removedFraction). */
export function metricOf(cell, key) {
  if (!cell || cell.state !== 'done' || !cell.result || typeof cell.result !== 'object') return null;
  if (key === 'sparsity') return sparsityOf(cell.result);
  if (key === 'removed') return removedFraction(cell.result);
  return num(cell.result[key]);
}

/* The component a cell prunes: spec.component, or spec.components (a name, or names joined
 * with "+"), else null. */
export function cellComponent(spec) {
  if (!spec) return null;
  if (typeof spec.component === 'string') return spec.component;
  if (typeof spec.components === 'string') return spec.components;
  if (Array.isArray(spec.components) && spec.components.length) return spec.components.join('+');
  return null;
}

/* "mlp=0.5, linear_out=0.3" for a joint config object; '' for anything else. */
export function configLabel(config) {
  if (!config || typeof config !== 'object' || Array.isArray(config)) return '';
  return Object.keys(config).map((k) => `${k}=${config[k]}`).join(', ');
}

/* A short human name for a cell from its grid coordinates, e.g. "layer 1 · mlp @ 0.5",
 * "mlp=0.5, linear_out=0.3", with " (seed 2)" when opts.seed; "cell N" when it has none. */
export function cellLabel(cell, opts = {}) {
  const s = (cell && cell.spec) || {};
  const parts = [];
  if (Number.isInteger(s.layer)) parts.push(`layer ${s.layer}`);
  const comp = cellComponent(s);
  const rate = num(s.rate);
  if (comp !== null) parts.push(rate !== null ? `${comp} @ ${rate}` : comp);
  else if (rate !== null) parts.push(`rate ${rate}`);
  const conf = configLabel(s.config);
  if (conf) parts.push(conf);
  let label = parts.join(' · ');
  if (!label) label = `cell ${cell && Number.isInteger(cell.idx) ? cell.idx : '?'}`;
  if (opts.seed && Number.isInteger(s.seed)) label += ` (seed ${s.seed})`;
  return label;
}

/* The headline metrics a job's charts can show: the value, its delta against the unpruned model,
 * the baseline key, which direction is better, labels, formats (fmt for values, fmtD for deltas)
 * and Plotly tick formats. */
export const HEADLINES = {
  accuracy: {
    key: 'accuracy', delta: 'delta_accuracy', baseline: 'baseline_accuracy', better: 'max',
    label: 'accuracy', deltaLabel: 'Δ accuracy', short: 'acc', deltaShort: 'Δ acc',
    fmt: (v) => fmtPercent(v), fmtD: (v) => fmtDelta(v), tick: '.1~%', deltaTick: '+.1~%',
  },
  perplexity: {
    key: 'perplexity', delta: 'delta_perplexity', baseline: 'baseline_perplexity', better: 'min',
    label: 'perplexity', deltaLabel: 'Δ perplexity', short: 'ppl', deltaShort: 'Δ ppl',
    fmt: (v) => fmtNumber(v), fmtD: (v) => fmtSigned(v), tick: '.4~g', deltaTick: '+.3~g',
  },
};

/* Whether a cell is a causal LM cell: its result says task "causal_lm" or metric "perplexity". */
export function isLmCell(cell) {
  const r = cell && cell.result;
  return Boolean(r && typeof r === 'object' && (r.task === 'causal_lm' || r.metric === 'perplexity'));
}

/* The headline metric of a job's cells (a HEADLINES entry): the "metric" of the first result
 * that names one in HEADLINES, perplexity for a causal LM cell, else accuracy. */
export function headlineOf(cells) {
  for (const c of cells || []) {
    const m = c && c.result && typeof c.result === 'object' ? c.result.metric : null;
    if (typeof m === 'string' && HEADLINES[m]) return HEADLINES[m];
    if (isLmCell(c)) return HEADLINES.perplexity;
  }
  return HEADLINES.accuracy;
}

/* The unpruned model's value of headline h: job.baseline's (accuracy; exp(loss) for perplexity),
 * else the first finished cell's baseline, else null. */
export function baselineOf(job, cells, h = HEADLINES.accuracy) {
  const b = job && job.baseline;
  if (b && typeof b === 'object') {
    if (h.key === 'accuracy' && num(b.accuracy) !== null) return b.accuracy;
    if (h.key === 'perplexity' && num(b.perplexity) !== null) return b.perplexity;
  }
  for (const c of cells || []) {
    const v = metricOf(c, h.baseline);
    if (v !== null) return v;
  }
  if (h.key === 'perplexity' && b && typeof b === 'object' && num(b.loss) !== null) return Math.exp(b.loss);
  return null;
}

/* Unique values in first-seen order. */
function unique(values) {
  const out = [];
  for (const v of values) if (!out.includes(v)) out.push(v);
  return out;
}

/* Sorted distinct seeds of the cells (integers only). */
export function seedsOf(cells) {
  const seeds = unique((cells || []).map((c) => c && c.spec && c.spec.seed).filter(Number.isInteger));
  return seeds.sort((a, b) => a - b);
}

/* Mean and standard deviation (population) of finite values; nulls when empty. */
function stats(values) {
  if (!values.length) return { mean: null, sd: null, n: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const v = values.reduce((a, b) => a + (b - mean) * (b - mean), 0) / values.length;
  return { mean, sd: Math.sqrt(v), n: values.length };
}

/* The ablation grid.
 * opts.components: the request's component order (names as written); components found only in
 * cells follow in first-seen order. opts.rates: the request's rates; all rates (request and
 * cells) are sorted ascending, duplicates removed. opts.metric: a METRICS key (default accuracy).
 * Returns {x: rates, y: components, z[i][j], sd[i][j], n[i][j], seeds, averaged}: z is the mean
 * over the done cells (all seeds) of component y[i] at rate x[j], null when none is done; n counts
 * them; averaged is true when the cells span more than one seed. */
export function heatmapGrid(cells, opts = {}) {
  const list = cells || [];
  const metric = opts.metric || 'accuracy';
  const y = unique([
    ...(opts.components || []).filter((c) => typeof c === 'string'),
    ...list.map((c) => cellComponent(c && c.spec)).filter((c) => c !== null),
  ]);
  const x = unique([
    ...(opts.rates || []).map(num),
    ...list.map((c) => num(c && c.spec && c.spec.rate)),
  ].filter((r) => r !== null)).sort((a, b) => a - b);
  const buckets = y.map(() => x.map(() => []));
  for (const c of list) {
    const i = y.indexOf(cellComponent(c && c.spec));
    const j = x.indexOf(num(c && c.spec && c.spec.rate));
    const v = metricOf(c, metric);
    if (i >= 0 && j >= 0 && v !== null) buckets[i][j].push(v);
  }
  const st = buckets.map((row) => row.map(stats));
  const seeds = seedsOf(list);
  return {
    x,
    y,
    z: st.map((row) => row.map((s) => s.mean)),
    sd: st.map((row) => row.map((s) => s.sd)),
    n: st.map((row) => row.map((s) => s.n)),
    seeds,
    averaged: seeds.length > 1,
  };
}

/* One line per component of a grid from heatmapGrid: [{name, x, y, sd, n}]. */
export function rateLines(grid) {
  return grid.y.map((name, i) => ({ name, x: grid.x.slice(), y: grid.z[i].slice(), sd: grid.sd[i].slice(), n: grid.n[i].slice() }));
}

/* Text drawn in each heatmap cell: format(value) or '' for null. */
export function gridText(z, format) {
  return z.map((row) => row.map((v) => (v === null ? '' : format(v))));
}

/* Per-layer sensitivity bars. opts.layers: the request's layers (an array; "all" or absent =
 * only the layers found in cells); opts.components: the request's component order.
 * Returns {layers (ascending), traces: [{name: component, x: layers, y: [mean per layer | null],
 * n}]}, one trace per component, one value per layer. */
export function sensitivityBars(cells, opts = {}) {
  const list = cells || [];
  const metric = opts.metric || 'accuracy';
  const layers = unique([
    ...(Array.isArray(opts.layers) ? opts.layers : []),
    ...list.map((c) => c && c.spec && c.spec.layer),
  ].filter(Number.isInteger)).sort((a, b) => a - b);
  const comps = unique([
    ...(opts.components || []).filter((c) => typeof c === 'string'),
    ...list.map((c) => cellComponent(c && c.spec)).filter((c) => c !== null),
  ]);
  const buckets = comps.map(() => layers.map(() => []));
  for (const c of list) {
    const i = comps.indexOf(cellComponent(c && c.spec));
    const j = layers.indexOf(c && c.spec ? c.spec.layer : undefined);
    const v = metricOf(c, metric);
    if (i >= 0 && j >= 0 && v !== null) buckets[i][j].push(v);
  }
  return {
    layers,
    traces: comps.map((name, i) => {
      const st = buckets[i].map(stats);
      return { name, x: layers.slice(), y: st.map((s) => s.mean), n: st.map((s) => s.n) };
    }),
  };
}

/* Indices of the Pareto-optimal points. points: [{x, y}]; opts.x / opts.y: 'min' or 'max',
 * which direction is better (default x 'min' = a cost, y 'max' = accuracy). A point is on the
 * front when no other point is at least as good in both and strictly better in one; points with
 * a non-finite x or y are ignored (neither on the front nor dominating). Exact duplicates of a
 * front point are all on the front. Returned in order of increasing cost (x ascending for 'min',
 * descending for 'max'); ties broken by index. */
export function paretoFront(points, opts = {}) {
  const sx = opts.x === 'max' ? -1 : 1;
  const sy = opts.y === 'min' ? -1 : 1;
  const cand = [];
  (points || []).forEach((p, i) => {
    const x = num(p && p.x);
    const y = num(p && p.y);
    if (x !== null && y !== null) cand.push({ i, cost: sx * x, gain: sy * y });
  });
  cand.sort((a, b) => a.cost - b.cost || b.gain - a.gain || a.i - b.i);
  const front = [];
  let best = null;
  for (const c of cand) {
    if (best === null || c.gain > best.gain) {
      front.push(c.i);
      best = c;
    } else if (c.gain === best.gain && c.cost === best.cost) {
      front.push(c.i);
    }
  }
  return front;
}

/* The costs the Pareto chart offers (select[data-testid=pareto-x]). */
export const PARETO_X = {
  sparsity: { metric: 'removed', better: 'max', label: 'Sparsity', axis: 'sparsity (share of params removed)' },
  params: { metric: 'params_nonzero', better: 'min', label: 'Non-zero parameters', axis: 'non-zero parameters' },
  latency: { metric: 'latency_ms_per_batch', better: 'min', label: 'Latency', axis: 'latency (ms per batch)' },
};

/* Points of the Pareto chart for cost key xKey (a PARETO_X key) and headline h (HEADLINES;
 * default accuracy, higher is better; perplexity: lower is better): every done cell with a finite
 * value and cost, as {x, y, label, idx}, and front = indices into points (paretoFront). */
export function paretoPoints(cells, xKey, h = HEADLINES.accuracy) {
  const def = PARETO_X[xKey] || PARETO_X.sparsity;
  const points = [];
  const seed = seedsOf(cells).length > 1;
  for (const c of cells || []) {
    const x = metricOf(c, def.metric);
    const y = metricOf(c, h.key);
    if (x !== null && y !== null) points.push({ x, y, label: cellLabel(c, { seed }), idx: c.idx });
  }
  return { points, front: paretoFront(points, { x: def.better, y: h.better }) };
}

/* Per-round RSST curves from a result's series (rsst_result_json): {round, accuracy (after
 * fine-tuning), pruned (before fine-tuning), perplexity and pruned_perplexity (a causal LM's:
 * the round's "perplexity", else exp(loss); null for image cells), sparsity, component_sparsity},
 * arrays of equal length with null where a round lacks a value; null when the result has no series. */
export function rsstSeries(result) {
  const series = result && Array.isArray(result.series) ? result.series : null;
  if (!series || !series.length || !series.every((r) => r && Number.isInteger(r.round))) return null;
  const rows = series.slice().sort((a, b) => a.round - b.round);
  const acc = (o) => (o && typeof o === 'object' ? num(o.accuracy) : null);
  const lm = isLmCell({ result });
  const ppl = (o) => {
    if (!lm || !o || typeof o !== 'object') return null;
    const p = num(o.perplexity);
    if (p !== null) return p;
    const l = num(o.loss);
    return l === null ? null : Math.exp(l);
  };
  return {
    round: rows.map((r) => r.round),
    accuracy: rows.map((r) => acc(r.finetuned)),
    pruned: rows.map((r) => acc(r.pruned)),
    perplexity: rows.map((r) => ppl(r.finetuned)),
    pruned_perplexity: rows.map((r) => ppl(r.pruned)),
    sparsity: rows.map((r) => num(r.sparsity)),
    component_sparsity: rows.map((r) => num(r.component_sparsity)),
  };
}

/* Per-epoch train curves from a train result's series: {epoch, train_loss, test_loss,
 * train_acc, test_acc, train_ppl, test_ppl (exp of the losses for a causal LM, else nulls)}, or
 * null when absent. */
export function trainSeries(result) {
  const series = result && Array.isArray(result.series) ? result.series : null;
  if (!series || !series.length || !series.every((r) => r && Number.isInteger(r.epoch))) return null;
  const rows = series.slice().sort((a, b) => a.epoch - b.epoch);
  const col = (k) => rows.map((r) => num(r[k]));
  const lm = isLmCell({ result });
  const ppl = (k) => col(k).map((l) => (lm && l !== null ? Math.exp(l) : null));
  return { epoch: rows.map((r) => r.epoch), train_loss: col('train_loss'), test_loss: col('test_loss'),
      train_acc: col('train_acc'), test_acc: col('test_acc'), train_ppl: ppl('train_loss'), test_ppl: ppl('test_loss') };
}

/* ------------------------------------------------------------------ the models page */

/* What the models page shows of a model's task (GET /api/v1/models: task, vocab, tied; a model
 * listed without them is read from info.config): {task: "causal LM" | "image classifier", vocab:
 * "50,280" | DASH, head: "tied" | "untied" | DASH}. */
export function modelTask(m) {
  const cfg = (m && m.info && m.info.config) || {};
  const task = (m && m.task) || cfg.task || 'image_classifier';
  if (task !== 'causal_lm') return { task: 'image classifier', vocab: DASH, head: DASH };
  const vocab = num(m.vocab) ?? num(cfg.vocab);
  const tied = typeof m.tied === 'boolean' ? m.tied : typeof cfg.tied === 'boolean' ? cfg.tied : null;
  return { task: 'causal LM', vocab: fmtInt(vocab), head: tied === null ? DASH : tied ? 'tied' : 'untied' };
}

/* ------------------------------------------------------------------ the cell table */

/* Columns of the cell table: key, label and format kind. Coordinates first, then metrics. */
export const TABLE_COLUMNS = [
  { key: 'idx', label: '#', kind: 'int' },
  { key: 'state', label: 'State', kind: 'text' },
  { key: 'layer', label: 'Layer', kind: 'int' },
  { key: 'component', label: 'Component', kind: 'text' },
  { key: 'rate', label: 'Rate', kind: 'num' },
  { key: 'config', label: 'Config', kind: 'text' },
  { key: 'seed', label: 'Seed', kind: 'int' },
  { key: 'accuracy', label: 'Accuracy', kind: 'pct' },
  { key: 'delta_accuracy', label: 'Δ acc', kind: 'delta' },
  { key: 'loss', label: 'Loss', kind: 'num' },
  { key: 'perplexity', label: 'Perplexity', kind: 'num' },
  { key: 'delta_perplexity', label: 'Δ ppl', kind: 'signed' },
  { key: 'bits_per_token', label: 'Bits/token', kind: 'num' },
  { key: 'bits_per_byte', label: 'Bits/byte', kind: 'num' },
  { key: 'tokens_per_s', label: 'Tokens/s', kind: 'num' },
  { key: 'sparsity', label: 'Sparsity', kind: 'pct' },
  { key: 'removed', label: 'Removed', kind: 'pct' },
  { key: 'params', label: 'Params', kind: 'int' },
  { key: 'params_nonzero', label: 'Non-zero', kind: 'int' },
  { key: 'latency_ms_per_batch', label: 'Latency ms', kind: 'num' },
  { key: 'samples_per_s', label: 'Samples/s', kind: 'num' },
  { key: 'speedup', label: 'Speedup', kind: 'num' },
  { key: 'wall_s', label: 'Wall', kind: 'dur' },
  { key: 'attempts', label: 'Attempts', kind: 'int' },
  { key: 'error', label: 'Error', kind: 'text' },
];

/* Columns always shown, whatever the rows hold. */
const ALWAYS = ['idx', 'state', 'error'];

/* One flat row per cell: coordinates, metrics (null when not done), attempts, error message.
 * wall_s is the engine's wall time, else finished - started. */
export function cellRow(cell) {
  const s = (cell && cell.spec) || {};
  const e = cell && cell.error;
  let wall = metricOf(cell, 'wall_s');
  if (wall === null && cell && num(cell.started_ms) !== null && num(cell.finished_ms) !== null)
    wall = Math.max(0, (cell.finished_ms - cell.started_ms) / 1000);
  const row = {
    idx: cell ? cell.idx : null,
    state: cell ? cell.state : null,
    progress: cell ? num(cell.progress) : null,
    phase: cell && typeof cell.phase === 'string' ? cell.phase : null,
    layer: Number.isInteger(s.layer) ? s.layer : null,
    component: cellComponent(s),
    rate: num(s.rate),
    config: configLabel(s.config) || null,
    seed: Number.isInteger(s.seed) ? s.seed : null,
    wall_s: wall,
    attempts: cell && Number.isInteger(cell.attempts) ? cell.attempts : null,
    error: e ? [e.code, e.message].filter(Boolean).join(': ') || null : null,
  };
  for (const k of ['accuracy', 'delta_accuracy', 'loss', 'perplexity', 'delta_perplexity', 'bits_per_token',
          'bits_per_byte', 'tokens_per_s', 'sparsity', 'removed', 'params', 'params_nonzero',
          'latency_ms_per_batch', 'samples_per_s', 'speedup'])
    row[k] = metricOf(cell, k);
  return row;
}

/* A language model's accuracy is its next-token top-1 accuracy: said so in the header. */
const LM_LABELS = { accuracy: 'Next-token acc', delta_accuracy: 'Δ next-token acc' };

/* The TABLE_COLUMNS worth showing for rows: the ALWAYS ones and every column with a value in
 * some row; "seed" only when the rows hold more than one seed. Rows of a causal LM (any row with
 * a perplexity) relabel the accuracy columns. */
export function tableColumns(rows) {
  const lm = rows.some((r) => r.perplexity !== null && r.perplexity !== undefined);
  return TABLE_COLUMNS.filter((c) => {
    if (ALWAYS.includes(c.key)) return true;
    const vals = rows.map((r) => r[c.key]).filter((v) => v !== null && v !== undefined);
    if (c.key === 'seed') return unique(vals).length > 1;
    return vals.length > 0;
  }).map((c) => (lm && LM_LABELS[c.key] ? { ...c, label: LM_LABELS[c.key] } : c));
}

function isBlank(v) {
  return v === null || v === undefined || v === '' || (typeof v === 'number' && Number.isNaN(v));
}

/* Sort comparator: numbers numerically, strings by locale with numeric runs compared as numbers,
 * numbers before strings, and blanks (null, undefined, '', NaN) last in either direction.
 * dir: 1 ascending, -1 descending. */
export function compareValues(a, b, dir = 1) {
  const ba = isBlank(a);
  const bb = isBlank(b);
  if (ba || bb) return ba && bb ? 0 : ba ? 1 : -1;
  const na = typeof a === 'number';
  const nb = typeof b === 'number';
  let r;
  if (na && nb) r = a < b ? -1 : a > b ? 1 : 0;
  else if (na !== nb) r = na ? -1 : 1;
  else r = String(a).localeCompare(String(b), 'en', { numeric: true });
  return r === 0 ? 0 : (r < 0 ? -1 : 1) * (dir < 0 ? -1 : 1);
}

/* rows sorted by key (stable; ties keep their order); a new array. */
export function sortRows(rows, key, dir = 1) {
  return rows.map((r, i) => [r, i])
    .sort((p, q) => compareValues(p[0][key], q[0][key], dir) || p[1] - q[1])
    .map((p) => p[0]);
}

/* ------------------------------------------------------------------ formatting */

export const DASH = '—';

/* Integer with thousands separators ("26,500"); non-integers are rounded. */
export function fmtInt(v) {
  const x = num(v);
  if (x === null) return DASH;
  const r = Math.round(x);
  const s = String(Math.abs(r)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return (r < 0 ? '-' : '') + s;
}

/* A number for a table: integers and |v| >= 1000 as fmtInt, else `digits` significant digits
 * without trailing zeros ("2.82", "0.0125"); very small values in exponent form. */
export function fmtNumber(v, digits = 3) {
  const x = num(v);
  if (x === null) return DASH;
  if (Number.isInteger(x) || Math.abs(x) >= 1000) return fmtInt(x);
  if (x === 0) return '0';
  if (Math.abs(x) < 1e-4) return x.toExponential(Math.max(0, digits - 1)).replace(/\.?0+e/, 'e');
  return String(Number(x.toPrecision(digits)));
}

/* A fraction as a percentage: 0.953 -> "95.3%". */
export function fmtPercent(v, digits = 1) {
  const x = num(v);
  if (x === null) return DASH;
  const s = (x * 100).toFixed(digits);
  return (Number(s) === 0 ? (0).toFixed(digits) : s) + '%';
}

/* A difference of fractions in percentage points, signed: -0.0125 -> "-1.3 pp", 0 -> "0.0 pp". */
export function fmtDelta(v, digits = 1) {
  const x = num(v);
  if (x === null) return DASH;
  const s = (x * 100).toFixed(digits);
  if (Number(s) === 0) return `${(0).toFixed(digits)} pp`;
  return `${x > 0 ? '+' : ''}${s} pp`;
}

/* A signed difference as a number: 2.682 -> "+2.68", -0.5 -> "-0.5", 0 -> "0". */
export function fmtSigned(v, digits = 3) {
  const x = num(v);
  if (x === null) return DASH;
  const s = fmtNumber(x, digits);
  return x > 0 && s !== '0' ? `+${s}` : s;
}

/* Seconds as "0.42 s", "12.3 s", "3 min 04 s", "2 h 05 min". */
export function fmtDuration(v) {
  const x = num(v);
  if (x === null || x < 0) return DASH;
  if (x < 10) return `${Number(x.toPrecision(2))} s`;
  if (x < 60) return `${x.toFixed(1)} s`;
  const s = Math.round(x);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/* Format v by kind: 'pct' | 'delta' | 'signed' | 'int' | 'num' | 'dur' | 'text'. */
export function fmtKind(kind, v) {
  switch (kind) {
  case 'pct': return fmtPercent(v);
  case 'delta': return fmtDelta(v);
  case 'signed': return fmtSigned(v);
  case 'int': return fmtInt(v);
  case 'num': return fmtNumber(v);
  case 'dur': return fmtDuration(v);
  default: return isBlank(v) ? DASH : String(v);
  }
}

/* ------------------------------------------------------------------ colour scales */

/* ColorBrewer RdBu (11 classes, colour-blind safe): red = below zero (accuracy lost), white at
 * the centre, blue above. Used with zmid 0. */
export const DIVERGING_SCALE = [
  '#67001f', '#b2182b', '#d6604d', '#f4a582', '#fddbc7', '#f7f7f7',
  '#d1e5f0', '#92c5de', '#4393c3', '#2166ac', '#053061',
].map((c, i, a) => [i / (a.length - 1), c]);

/* Sequential scale for plain accuracy (perceptually uniform, colour-blind safe). */
export const SEQUENTIAL_SCALE = 'Viridis';

/* The same scale for metrics where higher is worse (perplexity): red above the centre. */
export const DIVERGING_SCALE_HIGH_BAD = DIVERGING_SCALE.map(([, c], i, a) => [i / (a.length - 1), a[a.length - 1 - i][1]]);

/* Colours of a heatmap of headline h (HEADLINES): {colorscale, zmid, reversescale}. delta: the
 * delta view, centred at 0. baseline: the unpruned model's value (null when unknown), the centre
 * of the plain view. Red always means worse than the unpruned model — below it for accuracy,
 * above it for perplexity. Without a baseline the plain view is sequential, reversed for
 * lower-is-better metrics so that the dark end is the worse one in both. */
export function heatmapColors(h, delta, baseline) {
  const scale = h.better === 'min' ? DIVERGING_SCALE_HIGH_BAD : DIVERGING_SCALE;
  if (delta) return { colorscale: scale, zmid: 0, reversescale: false };
  if (num(baseline) !== null) return { colorscale: scale, zmid: baseline, reversescale: false };
  return { colorscale: SEQUENTIAL_SCALE, zmid: null, reversescale: h.better === 'min' };
}
