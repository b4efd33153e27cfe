// charts.test.mjs — unit tests of web/js/charts.js (node:test + node:assert, no browser).
// Small hand-worked examples for the grid, lines, bars, series, table rows, sort comparator and
// formatting; the Pareto front is also checked against a brute-force O(n^2) reference on random
// point sets drawn on a coarse lattice (so ties and duplicates are frequent) with NaN / null
// holes. Run: node --test tests/web/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as C from '../../web/js/charts.js';

// A cell as GET /api/v1/jobs/{id}/cells returns it.
function cell(idx, state, spec, result = null, extra = {}) {
  return { idx, state, attempts: 1, progress: state === 'done' ? 1 : 0, phase: null, spec, result,
      error: null, started_ms: null, finished_ms: null, ...extra };
}
const done = (idx, spec, result) => cell(idx, 'done', spec, result);

test('num and sparsityOf accept only finite numbers and the engine report shapes', () => {
  assert.equal(C.num(0.5), 0.5);
  for (const v of [null, undefined, NaN, Infinity, -Infinity, '0.5', {}, []]) assert.equal(C.num(v), null);
  assert.equal(C.sparsityOf({ sparsity: 0.25 }), 0.25);
  assert.equal(C.sparsityOf({ sparsity: { overall: { sparsity: 0.4 }, weights: { sparsity: 0.5 } } }), 0.4);
  assert.equal(C.sparsityOf({ sparsity: { weights: { sparsity: 0.5 } } }), 0.5);
  assert.equal(C.sparsityOf({ sparsity: null }), null);
  assert.equal(C.sparsityOf(null), null);
  assert.equal(C.removedFraction({ params_nonzero: 750, params_baseline_nonzero: 1000 }), 0.25);
  assert.equal(C.removedFraction({ params_nonzero: 750 }), null);
});

test('metricOf gives values of done cells only', () => {
  const r = { accuracy: 0.9, delta_accuracy: -0.05, sparsity: { overall: { sparsity: 0.3 } } };
  assert.equal(C.metricOf(done(0, {}, r), 'accuracy'), 0.9);
  assert.equal(C.metricOf(done(0, {}, r), 'sparsity'), 0.3);
  assert.equal(C.metricOf(done(0, {}, r), 'latency_ms_per_batch'), null);
  for (const st of ['queued', 'running', 'failed', 'cancelled'])
    assert.equal(C.metricOf(cell(0, st, {}, r), 'accuracy'), null, st);
  assert.equal(C.metricOf(done(0, {}, null), 'accuracy'), null);
});

test('heatmapGrid: request order for components, ascending rates, nulls, seed averages', () => {
  const cells = [
    done(0, { component: 'mlp', rate: 0.7, seed: 1 }, { accuracy: 0.5, delta_accuracy: -0.4 }),
    done(1, { component: 'mlp', rate: 0.7, seed: 2 }, { accuracy: 0.7, delta_accuracy: -0.2 }),
    done(2, { component: 'mlp', rate: 0.3, seed: 1 }, { accuracy: 0.9, delta_accuracy: 0 }),
    cell(3, 'failed', { component: 'mlp', rate: 0.3, seed: 2 }, null, { error: { code: 'runtime', message: 'x' } }),
    cell(4, 'running', { component: 'linear_out', rate: 0.7, seed: 1 }),
    done(5, { component: 'linear_out', rate: 0.3, seed: 2 }, { accuracy: 0.8, delta_accuracy: -0.1 }),
    done(6, { component: 'conv1d', rate: 0.3, seed: 1 }, { accuracy: 0.6, delta_accuracy: -0.3 }),
  ];
  const g = C.heatmapGrid(cells, { components: ['linear_out', 'mlp'], rates: [0.7, 0.3, 0.5] });
  assert.deepEqual(g.x, [0.3, 0.5, 0.7]);
  assert.deepEqual(g.y, ['linear_out', 'mlp', 'conv1d']); // request order, then cells' extras
  assert.deepEqual(g.z, [[0.8, null, null], [0.9, null, (0.5 + 0.7) / 2], [0.6, null, null]]);
  assert.deepEqual(g.n, [[1, 0, 0], [1, 0, 2], [1, 0, 0]]);
  assert.ok(Math.abs(g.sd[1][2] - 0.1) < 1e-12);
  assert.deepEqual(g.seeds, [1, 2]);
  assert.equal(g.averaged, true);
  const d = C.heatmapGrid(cells, { components: ['linear_out', 'mlp'], rates: [0.7, 0.3], metric: 'delta_accuracy' });
  assert.ok(Math.abs(d.z[1][1] - -0.3) < 1e-12);
  assert.equal(d.z[1][0], 0);
  assert.equal(d.z[0][1], null);
});

test('heatmapGrid without seeds or request lists, and on nothing', () => {
  const cells = [
    done(0, { component: 'b', rate: 0.9, seed: 1 }, { accuracy: 0.1 }),
    done(1, { component: 'a', rate: 0.1, seed: 1 }, { accuracy: 0.2 }),
  ];
  const g = C.heatmapGrid(cells);
  assert.deepEqual(g.y, ['b', 'a']);
  assert.deepEqual(g.x, [0.1, 0.9]);
  assert.deepEqual(g.z, [[null, 0.1], [0.2, null]]);
  assert.equal(g.averaged, false);
  const e = C.heatmapGrid([], { components: ['mlp'], rates: [0.5] });
  assert.deepEqual(e.z, [[null]]);
  assert.deepEqual(C.heatmapGrid(null).z, []);
});

test('rateLines: one line per component over the ascending rates', () => {
  const g = C.heatmapGrid([
    done(0, { component: 'x', rate: 0.5 }, { accuracy: 0.4 }),
    done(1, { component: 'y', rate: 0.2 }, { accuracy: 0.3 }),
  ], { components: ['y', 'x'] });
  const lines = C.rateLines(g);
  assert.deepEqual(lines.map((l) => l.name), ['y', 'x']);
  assert.deepEqual(lines[0].x, [0.2, 0.5]);
  assert.deepEqual(lines[0].y, [0.3, null]);
  assert.deepEqual(lines[1].y, [null, 0.4]);
  lines[0].y[0] = 99; // lines are copies
  assert.equal(g.z[0][0], 0.3);
  assert.deepEqual(C.gridText(g.z, (v) => v.toFixed(1)), [['0.3', ''], ['', '0.4']]);
});

test('sensitivityBars: one bar per layer per component', () => {
  const cells = [
    done(0, { layer: 0, components: 'mlp', rate: 0.5 }, { accuracy: 0.9, delta_accuracy: -0.01 }),
    done(1, { layer: 0, components: 'gate', rate: 0.5 }, { accuracy: 0.8, delta_accuracy: -0.11 }),
    done(2, { layer: 2, components: 'mlp', rate: 0.5 }, { accuracy: 0.7, delta_accuracy: -0.21 }),
    cell(3, 'queued', { layer: 2, components: 'gate', rate: 0.5 }),
    done(4, { layer: 1, components: ['mlp', 'gate'], rate: 0.5 }, { accuracy: 0.5 }),
  ];
  const b = C.sensitivityBars(cells, { layers: [2, 0], components: ['gate', 'mlp'] });
  assert.deepEqual(b.layers, [0, 1, 2]);
  assert.deepEqual(b.traces.map((t) => t.name), ['gate', 'mlp', 'mlp+gate']);
  assert.deepEqual(b.traces[0].y, [0.8, null, null]);
  assert.deepEqual(b.traces[1].y, [0.9, null, 0.7]);
  assert.deepEqual(b.traces[2].y, [null, 0.5, null]);
  for (const t of b.traces) assert.deepEqual(t.x, [0, 1, 2]);
  const d = C.sensitivityBars(cells, { layers: 'all', metric: 'delta_accuracy' });
  assert.deepEqual(d.traces.map((t) => t.name), ['mlp', 'gate', 'mlp+gate']);
  assert.deepEqual(d.traces[1].y, [-0.11, null, null]);
});

test('paretoFront: hand-worked examples', () => {
  const P = (a) => a.map(([x, y]) => ({ x, y }));
  // cost x (min), accuracy y (max)
  assert.deepEqual(C.paretoFront(P([[3, 0.9], [1, 0.5], [2, 0.8], [2, 0.6], [4, 0.85]])), [1, 2, 0]);
  // same cost, different accuracy: only the better one
  assert.deepEqual(C.paretoFront(P([[1, 0.5], [1, 0.7]])), [1]);
  // same accuracy, different cost: only the cheaper one
  assert.deepEqual(C.paretoFront(P([[2, 0.7], [1, 0.7]])), [1]);
  // exact duplicates of a front point are all on the front; duplicates of a dominated one not
  assert.deepEqual(C.paretoFront(P([[1, 0.7], [1, 0.7], [2, 0.5], [2, 0.5]])), [0, 1]);
  // NaN, null, Infinity and missing points are ignored
  assert.deepEqual(C.paretoFront([{ x: NaN, y: 1 }, { x: 1, y: null }, null, { x: Infinity, y: 2 },
                  { x: 5, y: 0.1 }]), [4]);
  assert.deepEqual(C.paretoFront([]), []);
  assert.deepEqual(C.paretoFront(undefined), []);
  // x better when larger (sparsity): order of increasing cost = decreasing x
  assert.deepEqual(C.paretoFront(P([[0.1, 0.9], [0.5, 0.8], [0.3, 0.7], [0.5, 0.6]]), { x: 'max' }), [1, 0]);
  // y better when smaller
  assert.deepEqual(C.paretoFront(P([[1, 0.3], [2, 0.1], [3, 0.2]]), { y: 'min' }), [0, 1]);
});

// Brute force: i is on the front iff no j dominates it.
function paretoBrute(points, xBetter, yBetter) {
  const ok = (p) => p && Number.isFinite(p.x) && Number.isFinite(p.y);
  const gx = (p) => (xBetter === 'max' ? p.x : -p.x);
  const gy = (p) => (yBetter === 'min' ? -p.y : p.y);
  const front = [];
  points.forEach((p, i) => {
    if (!ok(p)) return;
    const dominated = points.some((q, j) => j !== i && ok(q) && gx(q) >= gx(p) && gy(q) >= gy(p) &&
                      (gx(q) > gx(p) || gy(q) > gy(p)));
    if (!dominated) front.push(i);
  });
  return front;
}

// A small deterministic PRNG (mulberry32) so failures reproduce.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('paretoFront matches a brute-force reference on random points with ties and holes', () => {
  const r = rng(12345);
  let checked = 0;
  for (let trial = 0; trial < 400; trial++) {
    const n = Math.floor(r() * 25);
    const lattice = 2 + Math.floor(r() * 6); // coarse: many ties and duplicates
    const pts = [];
    for (let i = 0; i < n; i++) {
      const hole = r();
      pts.push({
        x: hole < 0.05 ? NaN : Math.floor(r() * lattice) / lattice,
        y: hole > 0.95 ? null : Math.floor(r() * lattice) / lattice,
      });
    }
    for (const xb of ['min', 'max']) {
      for (const yb of ['max', 'min']) {
        const got = C.paretoFront(pts, { x: xb, y: yb });
        const want = paretoBrute(pts, xb, yb);
        assert.deepEqual([...got].sort((a, b) => a - b), want, `trial ${trial} x ${xb} y ${yb}: ${JSON.stringify(pts)}`);
        // order: increasing cost
        const cost = got.map((i) => (xb === 'max' ? -pts[i].x : pts[i].x));
        for (let k = 1; k < cost.length; k++) assert.ok(cost[k - 1] <= cost[k]);
        checked += want.length;
      }
    }
  }
  assert.ok(checked > 0);
});

test('paretoPoints: done cells with accuracy and the chosen cost, labelled by config', () => {
  const cells = [
    done(0, { config: { mlp: 0.5, out_proj: 0.3 } },
      { accuracy: 0.8, params_nonzero: 800, params_baseline_nonzero: 1000, latency_ms_per_batch: 3 }),
    done(1, { config: { conv1d: 0.25 } },
      { accuracy: 0.9, params_nonzero: 950, params_baseline_nonzero: 1000, latency_ms_per_batch: 2 }),
    done(2, { config: { mlp: 0.9 } },
      { accuracy: 0.7, params_nonzero: 900, params_baseline_nonzero: 1000, latency_ms_per_batch: null }),
    cell(3, 'failed', { config: { D: 0.5 } }),
  ];
  const p = C.paretoPoints(cells, 'params');
  assert.deepEqual(p.points.map((q) => q.label), ['mlp=0.5, out_proj=0.3', 'conv1d=0.25', 'mlp=0.9']);
  assert.deepEqual(p.front, [0, 1]); // 900 / 0.7 is beaten by 800 / 0.8
  const s = C.paretoPoints(cells, 'sparsity'); // removed share: 0.2, 0.05, 0.1 (larger is better)
  assert.ok(Math.abs(s.points[0].x - 0.2) < 1e-12);
  assert.deepEqual(s.front, [0, 1]);
  const l = C.paretoPoints(cells, 'latency');
  assert.equal(l.points.length, 2); // the cell without latency has no point
  assert.deepEqual(l.front, [1]);
});

test('rsstSeries and trainSeries extract the per-round and per-epoch curves', () => {
  const res = { series: [
    { round: 2, pruned: { accuracy: 0.6, loss: 1 }, finetuned: { accuracy: 0.75, loss: 0.8 }, sparsity: 0.5, component_sparsity: 0.7 },
    { round: 1, pruned: { accuracy: 0.7, loss: 1 }, finetuned: null, sparsity: 0.3, component_sparsity: 0.4 },
  ] };
  assert.deepEqual(C.rsstSeries(res), { round: [1, 2], accuracy: [null, 0.75], pruned: [0.7, 0.6],
                     perplexity: [null, null], pruned_perplexity: [null, null],
                     sparsity: [0.3, 0.5], component_sparsity: [0.4, 0.7] });
  assert.equal(C.rsstSeries({ series: [] }), null);
  assert.equal(C.rsstSeries({ series: null }), null);
  assert.equal(C.rsstSeries({ series: [{ epoch: 1 }] }), null); // a train series is not an rsst one
  assert.equal(C.rsstSeries(null), null);
  const t = C.trainSeries({ series: [{ epoch: 2, train_loss: 0.5, test_loss: 0.6, train_acc: 0.8, test_acc: 0.7 },
                   { epoch: 1, train_loss: 1.0, test_acc: 0.5 }] });
  assert.deepEqual(t, { epoch: [1, 2], train_loss: [1.0, 0.5], test_loss: [null, 0.6], train_acc: [null, 0.8],
             test_acc: [0.5, 0.7], train_ppl: [null, null], test_ppl: [null, null] });
  assert.equal(C.trainSeries({ series: [{ round: 1 }] }), null);
});

test('cellRow, cellLabel and tableColumns', () => {
  const failed = cell(3, 'failed', { component: 'mlp', rate: 0.5, seed: 2 }, null,
            { error: { code: 'runtime', message: 'out of memory' }, attempts: 3,
             started_ms: 1000, finished_ms: 3500 });
  const r = C.cellRow(failed);
  assert.equal(r.error, 'runtime: out of memory');
  assert.equal(r.accuracy, null);
  assert.equal(r.wall_s, 2.5);
  assert.equal(r.attempts, 3);
  assert.equal(r.component, 'mlp');
  const ok = C.cellRow(done(0, { layer: 1, components: 'gate', rate: 0.3 },
               { accuracy: 0.9, wall_s: 4, sparsity: { overall: { sparsity: 0.1 } } }));
  assert.equal(ok.wall_s, 4);
  assert.equal(ok.sparsity, 0.1);
  assert.equal(ok.layer, 1);
  assert.equal(ok.error, null);
  assert.equal(C.cellLabel(failed), 'mlp @ 0.5');
  assert.equal(C.cellLabel(failed, { seed: true }), 'mlp @ 0.5 (seed 2)');
  assert.equal(C.cellLabel(done(1, { layer: 1, components: 'gate', rate: 0.3 }, {})), 'layer 1 · gate @ 0.3');
  assert.equal(C.cellLabel(done(7, { recipe: 'rsst' }, {})), 'cell 7');
  const cols = C.tableColumns([r, ok]).map((c) => c.key);
  assert.ok(cols.includes('accuracy') && cols.includes('layer') && cols.includes('error'));
  assert.ok(!cols.includes('latency_ms_per_batch') && !cols.includes('config'));
  assert.ok(!cols.includes('seed')); // one seed only
  const seeds = C.tableColumns([r, C.cellRow(cell(4, 'queued', { component: 'mlp', rate: 0.5, seed: 1 }))]);
  assert.ok(seeds.some((c) => c.key === 'seed'));
});

test('compareValues and sortRows: numbers, strings, blanks last both ways, stable', () => {
  assert.equal(C.compareValues(1, 2), -1);
  assert.equal(C.compareValues(2, 1), 1);
  assert.equal(C.compareValues(2, 10, -1), 1);
  assert.equal(C.compareValues(0.5, 0.5), 0);
  assert.equal(C.compareValues('layer 2', 'layer 10'), -1); // numeric runs
  assert.equal(C.compareValues('b', 'a', -1), -1);
  assert.equal(C.compareValues(5, 'a'), -1);
  for (const dir of [1, -1]) {
    assert.equal(C.compareValues(null, 1, dir), 1);
    assert.equal(C.compareValues(1, undefined, dir), -1);
    assert.equal(C.compareValues(NaN, 'x', dir), 1);
    assert.equal(C.compareValues('', null, dir), 0);
  }
  const rows = [{ k: 3, i: 0 }, { k: null, i: 1 }, { k: 1, i: 2 }, { k: 3, i: 3 }, { k: NaN, i: 4 }, { k: -2, i: 5 }];
  assert.deepEqual(C.sortRows(rows, 'k', 1).map((r) => r.i), [5, 2, 0, 3, 1, 4]);
  assert.deepEqual(C.sortRows(rows, 'k', -1).map((r) => r.i), [0, 3, 2, 5, 1, 4]);
  assert.deepEqual(rows.map((r) => r.i), [0, 1, 2, 3, 4, 5]); // input untouched
});

test('number formatting', () => {
  assert.equal(C.fmtInt(26500), '26,500');
  assert.equal(C.fmtInt(-1234567), '-1,234,567');
  assert.equal(C.fmtInt(999.6), '1,000');
  assert.equal(C.fmtInt(null), C.DASH);
  assert.equal(C.fmtNumber(2.820198), '2.82');
  assert.equal(C.fmtNumber(0.012345), '0.0123');
  assert.equal(C.fmtNumber(6617.937), '6,618');
  assert.equal(C.fmtNumber(12), '12');
  assert.equal(C.fmtNumber(0), '0');
  assert.equal(C.fmtNumber(0.00001234), '1.23e-5');
  assert.equal(C.fmtNumber(NaN), C.DASH);
  assert.equal(C.fmtPercent(0.796), '79.6%');
  assert.equal(C.fmtPercent(1), '100.0%');
  assert.equal(C.fmtPercent(-0.0001), '0.0%'); // no "-0.0%"
  assert.equal(C.fmtPercent(undefined), C.DASH);
  assert.equal(C.fmtDelta(-0.0078125), '-0.8 pp');
  assert.equal(C.fmtDelta(0.0125), '+1.3 pp');
  assert.equal(C.fmtDelta(0), '0.0 pp');
  assert.equal(C.fmtDelta(-0.0001), '0.0 pp');
  assert.equal(C.fmtDuration(0.427), '0.43 s');
  assert.equal(C.fmtDuration(12.34), '12.3 s');
  assert.equal(C.fmtDuration(184), '3 min 04 s');
  assert.equal(C.fmtDuration(7500), '2 h 05 min');
  assert.equal(C.fmtDuration(-1), C.DASH);
  assert.equal(C.fmtKind('pct', 0.5), '50.0%');
  assert.equal(C.fmtKind('text', null), C.DASH);
  assert.equal(C.fmtKind('text', 'mlp'), 'mlp');
});

test('colour scales: diverging scale is white at its centre and spans [0, 1]', () => {
  const s = C.DIVERGING_SCALE;
  assert.equal(s[0][0], 0);
  assert.equal(s[s.length - 1][0], 1);
  const mid = s.find((p) => p[0] === 0.5);
  assert.ok(mid && /^#f7f7f7$/i.test(mid[1]));
  assert.equal(typeof C.SEQUENTIAL_SCALE, 'string');
});
