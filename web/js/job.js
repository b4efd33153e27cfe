// job.js — the job page (#/jobs/{id}): title, summary, per-type charts, the cell table, live updates.
//
// What: render(root, params, ctx) loads GET /api/v1/jobs/{id} (spec, state, per-state counts,
// progress, version) and every page of GET /api/v1/jobs/{id}/cells, then draws by job type — ablation: a
// component x rate heatmap (accuracy <-> delta accuracy toggle, values in the cells, seeds
// averaged) and accuracy-vs-rate lines; sensitivity: grouped bars per layer per component;
// joint / lite: accuracy against a chosen cost with the Pareto front as its own trace (causal LM
// jobs: every one of these in perplexity, lower is better, red = worse; C.headlineOf); rsst:
// per-round accuracy and sparsity; train: per-epoch loss and accuracy — and always a sortable
// cell table (failed cells with their error) with a CSV link. While the job is not finished it
// long-polls GET /api/v1/jobs/{id}?wait=20&since=V and, when the job changed, refetches the cells
// and redraws with Plotly.react (same divs, the user's toggles and zoom kept).
// Assumptions: the data shaping lives in charts.js (pure, unit-tested); Plotly is the global
// window.Plotly from /vendor/plotly.min.js — when it is missing each chart slot says so and the
// rest of the page still works. ctx = {api, token, navigate} as in the dashboard contract.
// Ownership: everything this page creates lives under root; the cleanup function returned by
// render aborts the long-poll, stops the loop and purges the Plotly graphs (their resize
// listeners), so nothing outlives the route.

import { apiAll } from './api.js';
import * as C from './charts.js';
import { el, fmtTime, replace, stateBadge } from './dom.js';

const POLL_WAIT_S = 20;
const POLL_MIN_MS = 1000; // at most one long-poll a second (other jobs' commits end a poll too)
const CELLS_PROGRESS_MS = 5000; // cells refetched for progress alone at most this often
const POLL_ERROR_MS = 5000; // pause after a failed poll before trying again
const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ['lasso2d', 'select2d'] };
const COLORS = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#f0e442', '#000000'];

function plotly() {
  return typeof window !== 'undefined' && window.Plotly && typeof window.Plotly.react === 'function'
    ? window.Plotly : null;
}

// Draw traces into div with Plotly.react, or leave a message when Plotly is unavailable.
function plot(div, traces, layout) {
  const P = plotly();
  if (!P) {
    if (!div.querySelector('.chart-missing'))
      replace(div, el('p', { class: 'chart-missing', role: 'note' },
        'Charts are unavailable: the plotting library (/vendor/plotly.min.js) did not load. ' +
        'Install it with `npm ci --prefix web` on the server; the table below has every value.'));
    return;
  }
  const base = {
    autosize: true,
    margin: { l: 56, r: 16, t: 16, b: 48 },
    font: { family: 'system-ui, -apple-system, "Segoe UI", sans-serif', size: 12 },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)',
    legend: { orientation: 'h', x: 0, y: narrow() ? -0.3 : -0.22, yanchor: 'top' },
    hoverlabel: { namelength: -1 },
    uirevision: 'keep', // keep zoom and hidden traces across redraws
  };
  const full = { ...base, ...layout };
  if (!traces.some(hasValues)) {
    // nothing finished yet: a plain frame with a word instead of an arbitrary empty axis range
    full.annotations = [...(full.annotations || []), { xref: 'paper', yref: 'paper', x: 0.5, y: 0.5, showarrow: false,
      text: 'no finished cells yet', font: { size: 14, color: '#555555' } }];
    full.xaxis = { ...(full.xaxis || {}), showticklabels: false, showgrid: false, zeroline: false };
    full.yaxis = { ...(full.yaxis || {}), showticklabels: false, showgrid: false, zeroline: false };
  }
  Promise.resolve(P.react(div, traces, full, PLOT_CONFIG)).catch((e) => {
    replace(div, el('p', { class: 'chart-missing', role: 'alert' }, `Chart failed: ${e && e.message ? e.message : e}`));
  });
}

// Whether a trace has at least one finite value to draw (y, or z for a heatmap).
function hasValues(t) {
  const vals = t.type === 'heatmap' ? (t.z || []).flat() : (t.y || []);
  return vals.some((v) => typeof v === 'number' && Number.isFinite(v));
}

function narrow() {
  return typeof window !== 'undefined' && window.innerWidth < 600;
}

function jobIdOf(params) {
  if (params === null || params === undefined) return '';
  if (typeof params === 'string' || typeof params === 'number') return String(params);
  if (Array.isArray(params)) return String(params[0] ?? '');
  return String(params.id ?? params[0] ?? '');
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

function isAbort(e) {
  return e && (e.name === 'AbortError' || e.code === 20);
}

// A one-line description of the job's request.
function specSummary(job) {
  const s = job.spec || {};
  const parts = [];
  if (job.model) parts.push(`model ${job.model}`);
  if (s.dataset) parts.push(`dataset ${s.dataset}`);
  if (Array.isArray(s.components)) parts.push(`components ${s.components.join(', ')}`);
  if (Array.isArray(s.rates)) parts.push(`rates ${s.rates.join(', ')}`);
  if (s.rate !== undefined) parts.push(`rate ${s.rate}`);
  if (s.layers !== undefined) parts.push(`layers ${Array.isArray(s.layers) ? s.layers.join(', ') : s.layers}`);
  if (Array.isArray(s.seeds)) parts.push(`seeds ${s.seeds.join(', ')}`);
  if (Array.isArray(s.configs)) parts.push(`${s.configs.length} configs`);
  for (const k of ['granularity', 'criterion', 'scope', 'apply']) if (s[k]) parts.push(`${k} ${s[k]}`);
  if (s.finetune && s.finetune.steps) parts.push(`fine-tune ${s.finetune.steps} steps`);
  if ((s.type === 'rsst' || s.type === 'imp') && s.spec && typeof s.spec === 'object') {
    const r = s.spec;
    if (Array.isArray(r.prune))
      parts.push(`prune ${r.prune.map((e) => (e && typeof e === 'object' ? `${e.component ?? '?'} ${e.rate ?? ''}`.trim() : String(e))).join(', ')}`);
    if (r.rounds) parts.push(`${r.rounds} round${r.rounds === 1 ? '' : 's'}`);
    if (r.rsst && r.rsst.reg_steps !== undefined) parts.push(`${r.rsst.reg_steps} regularisation steps`);
    if (r.rewind && r.rewind !== 'none') parts.push(`rewind ${typeof r.rewind === 'object' ? `to step ${r.rewind.step}` : r.rewind}`);
    if (r.refill) parts.push('refill');
  }
  if (s.type === 'lite' && s.spec && s.spec.target && typeof s.spec.target === 'object')
    parts.push(`target ${C.configLabel(s.spec.target)}`);
  if (s.type === 'train') {
    if (s.name) parts.push(`produces ${s.name}`);
    if (s.preset) parts.push(`preset ${s.preset}`);
    if (s.epochs) parts.push(`${s.epochs} epochs`);
  }
  return parts.join(' · ');
}

export async function render(root, params, ctx) {
  const id = jobIdOf(params);
  const api = ctx.api;
  const hasToken = () => Boolean(typeof ctx.token === 'function' ? ctx.token() : ctx.token);
  const abort = new AbortController();
  const signal = abort.signal;
  const view = {
    delta: false, // heatmap toggle: the headline metric or its delta
    sensDelta: false, // sensitivity toggle
    paretoX: 'sparsity',
    sortKey: 'idx',
    sortDir: 1,
  };
  let job = null;
  let cells = [];
  let polling = false;
  let fetchSeq = 0;
  let cellsAt = 0; // when the cells were last fetched (ms)

  // ---------------------------------------------------------------- skeleton
  const title = el('h1', { 'data-testid': 'job-title' }, `Job ${id}`);
  const alertBox = el('div', { role: 'alert', class: 'alert', hidden: true });
  const summary = el('div', { 'data-testid': 'job-summary', class: 'job-summary', 'aria-live': 'polite' });
  const actions = el('div', { class: 'job-actions' });
  const chartsBox = el('div', { class: 'job-charts' });
  const csvLink = el('a', {
    'data-testid': 'csv-link', href: `/api/v1/jobs/${encodeURIComponent(id)}/results.csv`,
    download: `job-${id}-results.csv`,
  }, 'Download CSV');
  const jsonLink = el('a', { href: `/api/v1/jobs/${encodeURIComponent(id)}/results.json` }, 'JSON');
  const table = el('table', { 'data-testid': 'cells-table', class: 'cells-table', style: { whiteSpace: 'nowrap' } });
  const thead = el('thead');
  const tbody = el('tbody');
  table.append(el('caption', { class: 'visually-hidden' }, 'Cells of the job; activate a column header to sort'), thead, tbody);
  const tableSection = el('section', { class: 'job-cells', 'aria-labelledby': 'cells-h' },
    el('h2', { id: 'cells-h' }, 'Cells'),
    el('p', { class: 'table-links' }, csvLink, ' · ', jsonLink),
    el('div', { class: 'table-scroll', style: { overflowX: 'auto', maxWidth: '100%' } }, table));
  replace(root, el('div', { class: 'job-page' },
    el('p', { class: 'back' }, el('a', { href: '#/jobs' }, '← All jobs')),
    title, alertBox, summary, actions, chartsBox, tableSection));

  function showError(msg) {
    alertBox.hidden = !msg;
    alertBox.textContent = msg || '';
  }

  const chartDivs = []; // every Plotly div, purged in cleanup
  function chartDiv(testid, label) {
    const d = el('div', { 'data-testid': testid, class: 'chart', role: 'figure', 'aria-label': label,
              style: { width: '100%', minHeight: '240px' } });
    chartDivs.push(d);
    return d;
  }

  // ---------------------------------------------------------------- per-type chart sections
  let charts = null; // {type, draw()} built once the job type is known

  // the headline metric of the job's cells: accuracy, or perplexity for a causal LM
  function headline() {
    return C.headlineOf(cells);
  }

  function baselineAcc() {
    return C.baselineOf(job, cells, C.HEADLINES.accuracy);
  }

  function baselineShape(y, fmt = C.fmtPercent) {
    if (y === null) return { shapes: [], annotations: [] };
    return {
      shapes: [{ type: 'line', xref: 'paper', x0: 0, x1: 1, y0: y, y1: y,
           line: { color: '#555555', width: 1, dash: 'dot' } }],
      annotations: [{ xref: 'paper', x: 1, y, xanchor: 'right', yanchor: 'bottom', showarrow: false,
              text: `baseline ${fmt(y)}`, font: { size: 11, color: '#555555' } }],
    };
  }

  function buildAblation() {
    const toggle = el('button', { type: 'button', 'data-testid': 'heatmap-toggle', class: 'toggle' });
    const note = el('p', { class: 'chart-note' });
    const heat = chartDiv('heatmap', 'Heatmap of the metric per component and pruning rate');
    const lines = chartDiv('rate-lines', 'The metric against pruning rate, one line per component');
    const linesTitle = el('h2', { id: 'lines-h' }, 'Accuracy vs pruning rate');
    toggle.addEventListener('click', () => {
      view.delta = !view.delta;
      draw();
    });
    replace(chartsBox,
      el('section', { class: 'chart-section', 'aria-labelledby': 'heat-h' },
        el('div', { class: 'chart-head' }, el('h2', { id: 'heat-h' }, 'Component × pruning rate'), toggle),
        note, heat),
      el('section', { class: 'chart-section', 'aria-labelledby': 'lines-h' },
        linesTitle, lines));
    function draw() {
      const spec = job.spec || {};
      const H = headline();
      const delta = view.delta;
      const metric = delta ? H.delta : H.key;
      const base = C.baselineOf(job, cells, H);
      const grid = C.heatmapGrid(cells, { components: spec.components, rates: spec.rates, metric });
      const fmt = delta ? H.fmtD : H.fmt;
      heat.dataset.metric = metric;
      lines.dataset.metric = H.key;
      toggle.textContent = delta ? `Show ${H.label}` : `Show ${H.deltaLabel}`;
      toggle.setAttribute('aria-pressed', String(delta));
      toggle.setAttribute('aria-label', delta ? `Show ${H.label} in the heatmap` : `Show delta ${H.label} in the heatmap`);
      const worse = H.better === 'min' ? 'above' : 'below';
      note.textContent = (grid.averaged
        ? `Each cell is the mean over ${grid.seeds.length} seeds (${grid.seeds.join(', ')}); hover for the count. `
        : '') + (delta
        ? (H.key === 'accuracy' ? 'Δ accuracy = pruned − baseline, in percentage points; red = accuracy lost.'
          : `${H.deltaLabel} = pruned − baseline (positive = worse); red = ${H.label} went up.`)
        : `${H.key === 'accuracy' ? 'Accuracy' : 'Perplexity (lower is better)'} after pruning`
            + (spec.finetune && spec.finetune.steps ? ' and fine-tuning' : '')
            + (base !== null ? `; the colour scale is centred at the baseline (red = ${worse} it).` : '.'));
      const custom = grid.n.map((row, i) => row.map((n, j) => {
        if (n === 0) return 'not finished';
        return grid.averaged ? `mean of ${n} seed${n === 1 ? '' : 's'} (sd ${(H.key === 'accuracy' ? C.fmtDelta(grid.sd[i][j]) : C.fmtNumber(grid.sd[i][j])).replace(/^\+/, '')})` : '';
      }));
      // one diverging scale for both views, centred at 0 for delta and at the baseline otherwise,
      // so red always means "worse than the unpruned model" (heatmapColors turns it round for
      // perplexity, where higher is worse)
      const colors = C.heatmapColors(H, delta, base);
      const trace = {
        type: 'heatmap', x: grid.x, y: grid.y, z: grid.z,
        text: C.gridText(grid.z, fmt), texttemplate: '%{text}', textfont: { size: narrow() ? 10 : 12 },
        customdata: custom,
        hovertemplate: `%{y} at rate %{x}<br>${delta ? H.deltaLabel : H.label}: %{text}<br>%{customdata}<extra></extra>`,
        hoverongaps: false, xgap: 2, ygap: 2,
        colorscale: colors.colorscale, reversescale: colors.reversescale,
        colorbar: { title: { text: delta ? H.deltaShort : H.short }, tickformat: delta ? H.deltaTick : H.tick, thickness: 12 },
      };
      if (colors.zmid !== null) trace.zmid = colors.zmid;
      plot(heat, [trace], {
        height: Math.max(220, 90 + 34 * grid.y.length),
        uirevision: metric,
        margin: { l: 8, r: 8, t: 8, b: 48 },
        xaxis: { type: 'category', title: { text: 'pruning rate' }, automargin: true },
        yaxis: { type: 'category', autorange: 'reversed', automargin: true },
      });
      const valGrid = delta ? C.heatmapGrid(cells, { components: spec.components, rates: spec.rates, metric: H.key }) : grid;
      const traces = C.rateLines(valGrid).map((l, i) => {
        const t = {
          type: 'scatter', mode: 'lines+markers', name: l.name, x: l.x, y: l.y, connectgaps: false,
          line: { color: COLORS[i % COLORS.length] }, marker: { color: COLORS[i % COLORS.length] },
          hovertemplate: `${l.name} at rate %{x}: %{y:${H.tick}}<extra></extra>`,
        };
        if (valGrid.averaged) t.error_y = { type: 'data', array: l.sd.map((v) => v ?? 0), visible: true, thickness: 1 };
        return t;
      });
      linesTitle.textContent = `${H.key === 'accuracy' ? 'Accuracy' : 'Perplexity'} vs pruning rate`;
      plot(lines, traces, {
        height: narrow() ? 340 : 320,
        xaxis: { title: { text: 'pruning rate' }, zeroline: false },
        yaxis: { title: { text: H.label }, tickformat: H.tick },
        ...baselineShape(base, H.fmt),
      });
    }
    return { draw };
  }

  function buildSensitivity() {
    const toggle = el('button', { type: 'button', 'data-testid': 'sensitivity-toggle', class: 'toggle' });
    const bars = chartDiv('sensitivity-chart', 'Accuracy per layer after pruning each component');
    toggle.addEventListener('click', () => {
      view.sensDelta = !view.sensDelta;
      draw();
    });
    const note = el('p', { class: 'chart-note' });
    replace(chartsBox, el('section', { class: 'chart-section', 'aria-labelledby': 'sens-h' },
      el('div', { class: 'chart-head' }, el('h2', { id: 'sens-h' }, 'Per-layer sensitivity'), toggle), note, bars));
    function draw() {
      const spec = job.spec || {};
      const H = headline();
      const delta = view.sensDelta;
      const metric = delta ? H.delta : H.key;
      const base = C.baselineOf(job, cells, H);
      const b = C.sensitivityBars(cells, { layers: spec.layers, components: spec.components, metric });
      bars.dataset.metric = metric;
      toggle.textContent = delta ? `Show ${H.label}` : `Show ${H.deltaLabel}`;
      toggle.setAttribute('aria-pressed', String(delta));
      const fmt = delta ? H.fmtD : H.fmt;
      const traces = b.traces.map((t, i) => ({
        type: 'bar', name: t.name, x: t.x, y: t.y, marker: { color: COLORS[i % COLORS.length] },
        text: t.y.map((v) => (v === null ? '' : fmt(v))), textposition: 'none',
        hovertemplate: `layer %{x} · ${t.name}${spec.rate !== undefined ? ` @ ${spec.rate}` : ''}: %{text}<extra></extra>`,
      }));
      // the bars differ by little: zoom the axis to the values (and the baseline)
      let range;
      const ys = b.traces.flatMap((t) => t.y).filter((v) => v !== null);
      if (!delta && ys.length) {
        const lo = Math.min(...ys, base ?? Infinity);
        const hi = Math.max(...ys, base ?? -Infinity);
        if (H.key === 'accuracy') {
          const pad = Math.max(0.01, (hi - lo) * 0.15);
          range = [Math.max(0, lo - pad), Math.min(1, hi + pad)];
        } else {
          const pad = Math.max(hi * 0.005, (hi - lo) * 0.15);
          range = [Math.max(0, lo - pad), hi + pad];
        }
      }
      note.textContent = `Each bar: the model with only that component of that layer pruned at rate ${spec.rate ?? '?'}.` +
        (H.key === 'perplexity' ? ' Lower perplexity is better.' : '') +
        (range ? ` The ${H.label} axis is zoomed to the values.` : '');
      plot(bars, traces, {
        height: narrow() ? 360 : 340, barmode: 'group', uirevision: metric,
        xaxis: { type: 'category', title: { text: 'layer' } },
        yaxis: { title: { text: delta ? H.deltaLabel : H.label }, tickformat: delta ? H.deltaTick : H.tick,
            range, autorange: range ? false : true },
        ...(delta ? {} : baselineShape(base, H.fmt)),
      });
    }
    return { draw };
  }

  function buildPareto() {
    const select = el('select', { 'data-testid': 'pareto-x', id: 'pareto-x' },
      ...Object.entries(C.PARETO_X).map(([k, d]) => el('option', { value: k }, d.label)));
    select.value = view.paretoX;
    const chart = chartDiv('pareto-chart', 'The metric against cost for each configuration, Pareto front marked');
    const paretoTitle = el('h2', { id: 'pareto-h' }, 'Accuracy vs cost');
    const note = el('p', { class: 'chart-note' });
    select.addEventListener('change', () => {
      view.paretoX = select.value;
      draw();
    });
    replace(chartsBox, el('section', { class: 'chart-section', 'aria-labelledby': 'pareto-h' },
      paretoTitle,
      el('p', { class: 'chart-controls' }, el('label', { for: 'pareto-x' }, 'Cost axis: '), select),
      note, chart));
    function draw() {
      const def = C.PARETO_X[view.paretoX];
      const H = headline();
      const { points, front } = C.paretoPoints(cells, view.paretoX, H);
      const fp = front.map((i) => points[i]);
      const xfmt = view.paretoX === 'params' ? ',d' : view.paretoX === 'sparsity' ? '.1%' : '.3f';
      const hover = `%{text}<br>${H.label} %{y:${H.tick}}<br>${def.axis}: %{x:${xfmt}}<extra>%{fullData.name}</extra>`;
      paretoTitle.textContent = `${H.key === 'accuracy' ? 'Accuracy' : 'Perplexity'} vs cost`;
      note.textContent = `Pareto front: the configurations no other one beats on both ${H.label} and ${def.axis}; ` +
        `${def.better === 'max' ? 'higher' : 'lower'} ${def.axis} and ${H.better === 'max' ? 'higher' : 'lower'} ${H.label} are better.` +
        (points.length < cells.length ? ` ${cells.length - points.length} cell(s) without a value are not shown.` : '');
      const traces = [
        { type: 'scatter', mode: 'markers', name: 'configs', x: points.map((p) => p.x), y: points.map((p) => p.y),
         text: points.map((p) => p.label), marker: { color: COLORS[0], size: 9, opacity: 0.75 }, hovertemplate: hover },
        { type: 'scatter', mode: 'lines+markers', name: 'Pareto front', x: fp.map((p) => p.x), y: fp.map((p) => p.y),
         text: fp.map((p) => p.label), line: { color: COLORS[5], width: 2 },
         marker: { color: COLORS[5], size: 11, symbol: 'diamond-open', line: { width: 2 } }, hovertemplate: hover },
      ];
      // the unpruned model as a reference point
      const ref = cells.find((c) => C.metricOf(c, H.baseline) !== null);
      if (ref) {
        const r = ref.result;
        const bx = view.paretoX === 'sparsity' ? 0
          : view.paretoX === 'params' ? C.num(r.params_baseline_nonzero) : C.num(r.baseline_latency_ms_per_batch);
        if (bx !== null)
          traces.push({ type: 'scatter', mode: 'markers', name: 'baseline', x: [bx], y: [r[H.baseline]],
                 text: ['unpruned model'], marker: { color: '#555555', size: 12, symbol: 'star' }, hovertemplate: hover });
      }
      chart.dataset.x = view.paretoX;
      plot(chart, traces, {
        height: 380, uirevision: view.paretoX,
        xaxis: { title: { text: def.axis }, tickformat: xfmt, zeroline: false },
        yaxis: { title: { text: H.label }, tickformat: H.tick },
      });
      chart.dataset.metric = H.key;
    }
    return { draw };
  }

  function buildRsst() {
    const chart = chartDiv('rsst-chart', 'Headline metric and sparsity per RSST round');
    const note = el('p', { class: 'chart-note' });
    replace(chartsBox, el('section', { class: 'chart-section', 'aria-labelledby': 'rsst-h' },
      el('h2', { id: 'rsst-h' }, 'RSST rounds'), note, chart));
    function draw() {
      const traces = [];
      // a causal LM's rounds in perplexity (lower is better), an image model's in accuracy
      const H = headline();
      const lm = H.key === 'perplexity';
      const yfmt = lm ? '%{y:.4~g}' : '%{y:.1%}';
      const withSeries = cells.filter((c) => c.state === 'done' && C.rsstSeries(c.result));
      withSeries.forEach((c, k) => {
        const s = C.rsstSeries(c.result);
        const tag = withSeries.length > 1 ? ` (${C.cellLabel(c)})` : '';
        const col = COLORS[(2 * k) % COLORS.length];
        traces.push(
          { type: 'scatter', mode: 'lines+markers', name: `${H.label} after fine-tune${tag}`, x: s.round,
           y: lm ? s.perplexity : s.accuracy,
           line: { color: col }, hovertemplate: `round %{x}: ${yfmt}<extra>%{fullData.name}</extra>` },
          { type: 'scatter', mode: 'lines+markers', name: `${H.label} after pruning${tag}`, x: s.round,
           y: lm ? s.pruned_perplexity : s.pruned,
           line: { color: col, dash: 'dot' }, hovertemplate: `round %{x}: ${yfmt}<extra>%{fullData.name}</extra>` },
          { type: 'scatter', mode: 'lines+markers', name: `sparsity${tag}`, x: s.round, y: s.sparsity, yaxis: 'y2',
           line: { color: COLORS[(2 * k + 1) % COLORS.length] }, hovertemplate: 'round %{x}: %{y:.1%}<extra>%{fullData.name}</extra>' });
      });
      const running = cells.find((c) => c.state === 'running');
      note.textContent = traces.length ? ''
        : running ? `Round curves appear when the run finishes (now: ${running.phase || 'running'}, ${C.fmtPercent(running.progress, 0)}).`
          : 'No finished round yet.';
      plot(chart, traces, {
        height: narrow() ? 380 : 340,
        margin: { l: 56, r: 56, t: 16, b: 48 },
        xaxis: { title: { text: 'round' }, dtick: 1 },
        yaxis: { title: { text: H.label }, tickformat: H.tick },
        yaxis2: { title: { text: 'sparsity' }, tickformat: '.1~%', overlaying: 'y', side: 'right', rangemode: 'tozero', showgrid: false, tickmode: 'auto' },
        ...(lm ? baselineShape(C.baselineOf(job, cells, H), C.fmtNumber) : baselineShape(baselineAcc())),
      });
      chart.dataset.metric = H.key;
    }
    return { draw };
  }

  function buildTrain() {
    const chart = chartDiv('train-chart', 'Loss and accuracy per epoch');
    const note = el('p', { class: 'chart-note' });
    replace(chartsBox, el('section', { class: 'chart-section', 'aria-labelledby': 'train-h' },
      el('h2', { id: 'train-h' }, 'Training curves'), note, chart));
    function draw() {
      const done = cells.find((c) => c.state === 'done' && C.trainSeries(c.result));
      const s = done ? C.trainSeries(done.result) : null;
      // a causal LM's second axis is perplexity (exp of the losses), an image model's accuracy
      const lm = Boolean(done && C.isLmCell(done));
      chart.dataset.metric = lm ? 'perplexity' : 'accuracy';
      note.textContent = s ? '' : 'Per-epoch curves appear when training finishes.';
      const tr = (name, y, axis, color, dash) => ({
        type: 'scatter', mode: 'lines+markers', name, x: s ? s.epoch : [], y: y || [], yaxis: axis,
        line: { color, dash }, hovertemplate: `epoch %{x}: %{y:.4}<extra>${name}</extra>`,
      });
      plot(chart, [
        tr('train loss', s && s.train_loss, 'y', COLORS[0]), tr('test loss', s && s.test_loss, 'y', COLORS[0], 'dot'),
        ...(lm ? [tr('train perplexity', s.train_ppl, 'y2', COLORS[1]), tr('test perplexity', s.test_ppl, 'y2', COLORS[1], 'dot')]
          : [tr('train accuracy', s && s.train_acc, 'y2', COLORS[1]), tr('test accuracy', s && s.test_acc, 'y2', COLORS[1], 'dot')]),
      ], {
        height: narrow() ? 380 : 320,
        margin: { l: 56, r: 56, t: 16, b: 48 },
        xaxis: { title: { text: 'epoch' }, dtick: 1 },
        yaxis: { title: { text: 'loss' }, rangemode: 'tozero' },
        yaxis2: lm ? { title: { text: 'perplexity' }, overlaying: 'y', side: 'right', showgrid: false, tickmode: 'auto' }
          : { title: { text: 'accuracy' }, tickformat: '.1~%', overlaying: 'y', side: 'right', showgrid: false, tickmode: 'auto' },
      });
    }
    return { draw };
  }

  const BUILDERS = { ablation: buildAblation, sensitivity: buildSensitivity, joint: buildPareto, lite: buildPareto,
           rsst: buildRsst, imp: buildRsst, train: buildTrain };

  // ---------------------------------------------------------------- summary and actions
  // " · baseline accuracy 88.4%", or for a causal LM " · baseline perplexity 9.5 · 51,235 tokens/s"
  // (the fastest finished cell's evaluation throughput)
  function summaryMetric() {
    const H = headline();
    const base = H.key === 'accuracy'
      ? (job.baseline && Number.isFinite(job.baseline.accuracy) ? job.baseline.accuracy : null)
      : C.baselineOf(job, cells, H);
    let text = base !== null ? ` · baseline ${H.label} ${H.fmt(base)}` : '';
    const tps = cells.map((c) => C.metricOf(c, 'tokens_per_s')).filter((v) => v !== null);
    if (tps.length) text += ` · up to ${C.fmtNumber(Math.max(...tps))} tokens/s`;
    return text;
  }

  function drawSummary() {
    const counts = job.counts || {};
    const total = Number.isInteger(job.cells) ? job.cells : Object.values(counts).reduce((a, b) => a + (b || 0), 0);
    const prog = C.num(job.progress) ?? 0;
    const dur = job.started_ms ? ((job.finished_ms || Date.now()) - job.started_ms) / 1000 : null;
    title.textContent = `Job ${job.id} · ${job.type}${job.model ? ` · ${job.model}` : job.spec && job.spec.name ? ` → ${job.spec.name}` : ''}`;
    document.title = `Job ${job.id} (${job.state}) · prunelab`;
    replace(summary,
      el('p', { class: 'summary-line' },
        stateBadge(job.state), ' ',
        el('span', { 'data-testid': 'job-counts' },
          `${counts.done || 0} of ${total} cell${total === 1 ? '' : 's'} done · ${counts.failed || 0} failed · ` +
          `${counts.running || 0} running · ${counts.queued || 0} queued` +
          `${counts.cancelled ? ` · ${counts.cancelled} cancelled` : ''}`)),
      el('div', { class: 'progress-row' },
        el('progress', { max: 1, value: prog, 'aria-label': 'job progress', style: { width: 'min(100%, 28rem)' } }),
        ` ${C.fmtPercent(prog, 0)}`),
      el('p', { class: 'summary-meta' },
        `owner ${job.owner || C.DASH} · created ${fmtTime(job.created_ms)}` +
        (dur !== null ? ` · ${C.isFinished(job.state) ? 'took' : 'running for'} ${C.fmtDuration(dur)}` : '') +
        summaryMetric()),
      el('p', { class: 'summary-spec' }, specSummary(job)),
      job.error ? el('p', { class: 'job-error' }, `Error: ${job.error}`) : null);
    replace(actions);
    if (!hasToken()) return;
    if (!C.isFinished(job.state))
      actions.append(el('button', { type: 'button', 'data-action': 'cancel', onclick: (ev) => act(ev, 'cancel') }, 'Cancel job'));
    if ((counts.failed || 0) > 0)
      actions.append(el('button', { type: 'button', 'data-action': 'retry', onclick: (ev) => act(ev, 'retry') },
        `Retry ${counts.failed} failed cell${counts.failed === 1 ? '' : 's'}`));
  }

  async function act(ev, what) {
    const btn = ev.currentTarget;
    btn.disabled = true;
    try {
      await api(`/api/v1/jobs/${encodeURIComponent(id)}/${what}`, { method: 'POST', signal });
      showError('');
      await refresh();
      startPolling();
    } catch (e) {
      if (isAbort(e)) return;
      showError(`${what === 'cancel' ? 'Cancel' : 'Retry'} failed: ${e.message}`);
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- the cell table
  let tableKeys = '';
  function drawTable() {
    const rows = cells.map(C.cellRow);
    const cols = C.tableColumns(rows);
    const keys = cols.map((c) => c.key).join(',');
    if (keys !== tableKeys) {
      tableKeys = keys;
      if (!cols.some((c) => c.key === view.sortKey)) { view.sortKey = 'idx'; view.sortDir = 1; }
      replace(thead, el('tr', null, ...cols.map((c) => {
        const th = el('th', { scope: 'col', 'data-col': c.key },
          el('button', { type: 'button', class: 'sort', onclick: () => {
            if (view.sortKey === c.key) view.sortDir = -view.sortDir;
            else { view.sortKey = c.key; view.sortDir = 1; }
            drawTable();
          } }, c.label, el('span', { class: 'sort-mark', 'aria-hidden': 'true' })));
        return th;
      })));
    }
    for (const th of thead.querySelectorAll('th')) {
      const on = th.dataset.col === view.sortKey;
      th.setAttribute('aria-sort', on ? (view.sortDir > 0 ? 'ascending' : 'descending') : 'none');
      th.querySelector('.sort-mark').textContent = on ? (view.sortDir > 0 ? ' ▲' : ' ▼') : '';
    }
    const byIdx = new Map(cells.map((c) => [c.idx, c]));
    replace(tbody, ...C.sortRows(rows, view.sortKey, view.sortDir).map((r) => {
      const cell = byIdx.get(r.idx);
      return el('tr', { 'data-cell-idx': r.idx, 'data-state': r.state, class: `cell-${r.state}` }, ...cols.map((c) => {
        if (c.key === 'state') {
          const extra = r.state === 'running'
            ? ` ${C.fmtPercent(r.progress, 0)}${r.phase ? ` · ${r.phase}` : ''}` : '';
          return el('td', { 'data-col': 'state' }, stateBadge(r.state), extra);
        }
        if (c.key === 'error') {
          if (!r.error) return el('td', { 'data-col': 'error' });
          const tail = cell && cell.stderr_tail;
          return el('td', { 'data-col': 'error', class: 'cell-error', style: { whiteSpace: 'normal', minWidth: '16rem' } }, r.error,
            tail ? el('details', null, el('summary', null, 'stderr'),
              el('pre', { style: { whiteSpace: 'pre-wrap', maxHeight: '12rem', overflow: 'auto' } }, tail)) : null);
        }
        const v = r[c.key];
        return el('td', { 'data-col': c.key, class: c.kind === 'text' ? null : 'num' }, C.fmtKind(c.kind, v));
      }));
    }));
  }

  // ---------------------------------------------------------------- data flow
  function draw() {
    drawSummary();
    if (!charts) {
      const b = BUILDERS[job.type];
      charts = b ? b() : { draw() {} };
    }
    charts.draw();
    drawTable();
  }

  // Fetch the cells and redraw with job j (a fresh GET of the job when j is not given).
  // Answers that arrive after a newer fetch started are dropped.
  async function refresh(j) {
    const seq = ++fetchSeq;
    const jj = j || await api(`/api/v1/jobs/${encodeURIComponent(id)}`, { signal });
    const cs = await apiAll(`/api/v1/jobs/${encodeURIComponent(id)}/cells`, 'cells', { signal }, api);
    if (seq !== fetchSeq || signal.aborted) return;
    job = jj;
    cells = cs;
    cellsAt = Date.now();
    draw();
  }

  // Nothing more will change: the job is finished and no cell still runs or waits (a cancelled
  // job's running cells end a moment after the job does).
  function settled(j) {
    const c = j.counts || {};
    return C.isFinished(j.state) && !c.running && !c.queued;
  }

  // What, besides progress, makes the cells worth refetching at once.
  function outline(j) {
    return JSON.stringify([j.state, j.counts, j.error, j.baseline]);
  }

  // Long-poll until the job is finished. A change of state or counts refetches the cells at
  // once; a change of progress alone updates the summary and refetches the cells (for the
  // running cells' progress) at most every CELLS_PROGRESS_MS. At most one poll per POLL_MIN_MS,
  // as other jobs' commits also end a poll.
  async function pollLoop() {
    let version = job.version;
    let pollFailed = false;
    while (!signal.aborted && job && !settled(job)) {
      const started = Date.now();
      try {
        const j = await api(`/api/v1/jobs/${encodeURIComponent(id)}?wait=${POLL_WAIT_S}&since=${version}`, { signal });
        if (signal.aborted) return;
        version = j.version;
        if (outline(j) !== outline(job) || (j.progress !== job.progress && Date.now() - cellsAt >= CELLS_PROGRESS_MS)) {
          await refresh(j);
        } else if (j.progress !== job.progress) {
          job = j;
          drawSummary();
        }
        if (pollFailed) showError('');
        pollFailed = false;
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        showError(`Live updates paused: ${e.message}`);
        pollFailed = true;
        await sleep(POLL_ERROR_MS, signal);
        continue;
      }
      await sleep(Math.max(0, POLL_MIN_MS - (Date.now() - started)), signal);
    }
  }

  function startPolling() {
    if (polling || signal.aborted || !job || settled(job)) return;
    polling = true;
    pollLoop().finally(() => { polling = false; });
  }

  // the header's token box saved or forgot a token: show or hide the write buttons
  const onToken = () => { if (job) drawSummary(); };
  window.addEventListener('prunelab:token', onToken);

  try {
    await refresh();
  } catch (e) {
    if (!isAbort(e)) {
      showError(e.status === 404 ? `Job ${id} not found.` : `Could not load job ${id}: ${e.message}`);
      tableSection.hidden = true;
    }
  }
  startPolling();

  return () => {
    abort.abort();
    window.removeEventListener('prunelab:token', onToken);
    const P = plotly();
    if (P && typeof P.purge === 'function') for (const d of chartDivs) { try { P.purge(d); } catch { /* already gone */ } }
  };
}
