// lm_charts.test.mjs — the causal LM paths of web/js/charts.js (node:test, no browser), with LM
// cells built by hand from the LM contract (result.task "causal_lm", result.metric "perplexity",
// perplexity, baseline_perplexity, delta_perplexity, bits_per_token, tokens_per_s, ...): the
// headline metric, perplexity heatmaps and rate lines, the colour scale turned round so red is the
// worse end (high perplexity), the delta view, sensitivity bars and the Pareto front in
// perplexity (lower is better), the cell table's LM columns and the models page's task cells.
// Run: node --test tests/web/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as C from '../../web/js/charts.js';

// An LM cell's result as the engine reports it (the LM contract), perplexity ppl against a
// baseline of 10.
function lmResult(ppl, extra = {}) {
  const loss = Math.log(ppl);
  return {
    task: 'causal_lm', metric: 'perplexity', loss, perplexity: ppl, baseline_perplexity: 10,
    baseline_loss: Math.log(10), delta_perplexity: ppl - 10, delta_loss: loss - Math.log(10),
    bits_per_token: loss / Math.LN2, accuracy: 0.3, baseline_accuracy: 0.32, delta_accuracy: -0.02,
    tokens_per_s: 50000 + ppl, eval: { split: 'val', n: 16, tokens: 4080, seq_len: 256 },
    params: 18912, params_nonzero: 15000, params_baseline_nonzero: 18656, sparsity: 0.2, wall_s: 1.5, ...extra,
  };
}
const cell = (idx, state, spec, result = null) => ({ idx, state, attempts: 1, progress: 1, phase: null, spec, result,
    error: null, started_ms: null, finished_ms: null });
const done = (idx, spec, result) => cell(idx, 'done', spec, result);

const ablation = [
  done(0, { component: 'in_proj', rate: 0.3, seed: 1, seq_len: 256 }, lmResult(11)),
  done(1, { component: 'in_proj', rate: 0.6, seed: 1, seq_len: 256 }, lmResult(16)),
  done(2, { component: 'x_proj_bc', rate: 0.3, seed: 1, seq_len: 256 }, lmResult(10.5)),
  cell(3, 'failed', { component: 'x_proj_bc', rate: 0.6, seed: 1, seq_len: 256 }),
];

test('the headline of LM cells is perplexity, lower is better; image cells keep accuracy', () => {
  assert.equal(C.headlineOf(ablation).key, 'perplexity');
  assert.equal(C.headlineOf(ablation).better, 'min');
  assert.equal(C.headlineOf(ablation).delta, 'delta_perplexity');
  // the first finished cell may come late; a failed cell's null result says nothing
  assert.equal(C.headlineOf([ablation[3], ablation[1]]).key, 'perplexity');
  assert.equal(C.headlineOf([done(0, {}, { task: 'causal_lm', perplexity: 3 })]).key, 'perplexity');
  assert.equal(C.headlineOf([done(0, { component: 'mlp', rate: 0.5 }, { accuracy: 0.9, metric: 'accuracy' })]).key, 'accuracy');
  assert.equal(C.headlineOf([done(0, {}, { accuracy: 0.9 })]).key, 'accuracy'); // older image results
  assert.equal(C.headlineOf([]).key, 'accuracy');
  assert.equal(C.isLmCell(ablation[0]), true);
  assert.equal(C.isLmCell(ablation[3]), false);
});

test('perplexity heatmap grid and rate lines', () => {
  const H = C.headlineOf(ablation);
  const g = C.heatmapGrid(ablation, { components: ['in_proj', 'x_proj_bc'], rates: [0.3, 0.6], metric: H.key });
  assert.deepEqual(g.x, [0.3, 0.6]);
  assert.deepEqual(g.y, ['in_proj', 'x_proj_bc']);
  assert.deepEqual(g.z, [[11, 16], [10.5, null]]);
  const d = C.heatmapGrid(ablation, { components: ['in_proj', 'x_proj_bc'], metric: H.delta });
  assert.deepEqual(d.z, [[1, 6], [0.5, null]]);
  assert.deepEqual(C.gridText(d.z, H.fmtD), [['+1', '+6'], ['+0.5', '']]);
  assert.deepEqual(C.gridText(g.z, H.fmt), [['11', '16'], ['10.5', '']]);
  const lines = C.rateLines(g);
  assert.deepEqual(lines.map((l) => [l.name, l.y]), [['in_proj', [11, 16]], ['x_proj_bc', [10.5, null]]]);
});

test('colour scales: red = worse, high perplexity and low accuracy', () => {
  const ppl = C.HEADLINES.perplexity;
  const acc = C.HEADLINES.accuracy;
  const RED = '#67001f';
  const BLUE = '#053061';
  const at = (scale, end) => (end === 'top' ? scale[scale.length - 1][1] : scale[0][1]);
  // perplexity: the top of the scale (high values) is red, centred at the baseline; delta at 0
  let c = C.heatmapColors(ppl, false, 10);
  assert.equal(at(c.colorscale, 'top'), RED);
  assert.equal(at(c.colorscale, 'bottom'), BLUE);
  assert.equal(c.zmid, 10);
  assert.equal(c.reversescale, false);
  c = C.heatmapColors(ppl, true, 10);
  assert.equal(at(c.colorscale, 'top'), RED);
  assert.equal(c.zmid, 0);
  // accuracy as before: red at the bottom (accuracy lost)
  c = C.heatmapColors(acc, false, 0.88);
  assert.equal(at(c.colorscale, 'bottom'), RED);
  assert.equal(c.zmid, 0.88);
  c = C.heatmapColors(acc, true, null);
  assert.equal(at(c.colorscale, 'bottom'), RED);
  assert.equal(c.zmid, 0);
  // no baseline: sequential, reversed for perplexity so the dark end is the worse one
  assert.deepEqual(C.heatmapColors(ppl, false, null), { colorscale: C.SEQUENTIAL_SCALE, zmid: null, reversescale: true });
  assert.deepEqual(C.heatmapColors(acc, false, null), { colorscale: C.SEQUENTIAL_SCALE, zmid: null, reversescale: false });
  // the turned scale is the same colours in the other order, positions 0..1
  assert.deepEqual(C.DIVERGING_SCALE_HIGH_BAD.map((p) => p[1]), C.DIVERGING_SCALE.map((p) => p[1]).reverse());
  assert.deepEqual(C.DIVERGING_SCALE_HIGH_BAD.map((p) => p[0]), C.DIVERGING_SCALE.map((p) => p[0]));
});

test('baseline perplexity: the cells\' baseline_perplexity, or exp(job.baseline.loss)', () => {
  const ppl = C.HEADLINES.perplexity;
  assert.equal(C.baselineOf({ baseline: null }, ablation, ppl), 10);
  assert.ok(Math.abs(C.baselineOf({ baseline: { accuracy: 0.3, loss: Math.log(12) } }, [], ppl) - 12) < 1e-12);
  assert.equal(C.baselineOf({ baseline: { accuracy: 0.3 } }, [], ppl), null);
  assert.equal(C.baselineOf({ baseline: { accuracy: 0.3 } }, ablation, C.HEADLINES.accuracy), 0.3);
});

test('sensitivity bars in perplexity and delta perplexity', () => {
  const sens = [
    done(0, { layer: 0, components: 'in_proj', rate: 0.5 }, lmResult(12)),
    done(1, { layer: 1, components: 'in_proj', rate: 0.5 }, lmResult(10.25)),
    cell(2, 'running', { layer: 2, components: 'in_proj', rate: 0.5 }),
  ];
  const b = C.sensitivityBars(sens, { layers: 'all', components: ['in_proj'], metric: 'perplexity' });
  assert.deepEqual(b.layers, [0, 1, 2]);
  assert.deepEqual(b.traces.map((t) => t.y), [[12, 10.25, null]]);
  const d = C.sensitivityBars(sens, { components: ['in_proj'], metric: C.headlineOf(sens).delta });
  assert.deepEqual(d.traces[0].y, [2, 0.25, null]);
});

test('Pareto front in perplexity: lower is better', () => {
  const joint = [
    done(0, { config: { in_proj: 0.5 } }, lmResult(12, { params_nonzero: 9000 })),
    done(1, { config: { in_proj: 0.3 } }, lmResult(11, { params_nonzero: 12000 })),
    done(2, { config: { dt: 0.3 } }, lmResult(13, { params_nonzero: 12000 })), // dominated by 1
    done(3, { config: { dt: 0.6 } }, lmResult(20, { params_nonzero: 8000 })),
  ];
  const H = C.headlineOf(joint);
  const p = C.paretoPoints(joint, 'params', H);
  assert.deepEqual(p.points.map((q) => q.y), [12, 11, 13, 20]);
  // by cost (non-zero params, lower is better): 8000 (ppl 20), 9000 (12), 12000 (11); 13 at 12000 is beaten
  assert.deepEqual(p.front, [3, 0, 1]);
  // in accuracy (the default) the same cells give a different front: every accuracy is 0.3
  assert.deepEqual(C.paretoPoints(joint, 'params').front, [3]);
});

test('the cell table shows perplexity, delta, bits/token and tokens/s for LM cells only', () => {
  const rows = ablation.map(C.cellRow);
  assert.equal(rows[0].perplexity, 11);
  assert.equal(rows[0].delta_perplexity, 1);
  assert.ok(Math.abs(rows[0].bits_per_token - Math.log(11) / Math.LN2) < 1e-12);
  assert.equal(rows[0].tokens_per_s, 50011);
  assert.equal(rows[3].perplexity, null);
  const keys = C.tableColumns(rows).map((c) => c.key);
  for (const k of ['perplexity', 'delta_perplexity', 'bits_per_token', 'tokens_per_s']) assert.ok(keys.includes(k), k);
  assert.ok(!keys.includes('bits_per_byte')); // no dataset here knows its bytes per token
  const label = (cols, k) => (cols.find((c) => c.key === k) || {}).label;
  assert.equal(label(C.tableColumns(rows), 'accuracy'), 'Next-token acc');
  const image = [done(0, { component: 'mlp', rate: 0.5 }, { accuracy: 0.9 })].map(C.cellRow);
  const ikeys = C.tableColumns(image).map((c) => c.key);
  for (const k of ['perplexity', 'delta_perplexity', 'bits_per_token', 'tokens_per_s']) assert.ok(!ikeys.includes(k), k);
  assert.equal(label(C.tableColumns(image), 'accuracy'), 'Accuracy');
  assert.equal(C.TABLE_COLUMNS.find((c) => c.key === 'accuracy').label, 'Accuracy'); // the shared list is not changed
  assert.equal(C.fmtKind('signed', 2.6824), '+2.68');
  assert.equal(C.fmtKind('signed', -0.5), '-0.5');
  assert.equal(C.fmtKind('signed', 0), '0');
  assert.equal(C.fmtKind('signed', null), C.DASH);
});

test('models page: task, vocabulary and head of either task', () => {
  assert.deepEqual(C.modelTask({ task: 'causal_lm', vocab: 50280, tied: true }), { task: 'causal LM', vocab: '50,280', head: 'tied' });
  assert.deepEqual(C.modelTask({ task: 'causal_lm', vocab: 64, tied: false }), { task: 'causal LM', vocab: '64', head: 'untied' });
  // a list entry without the fields: from the inspect info
  assert.deepEqual(C.modelTask({ info: { config: { task: 'causal_lm', vocab: 256, tied: true } } }),
    { task: 'causal LM', vocab: '256', head: 'tied' });
  assert.deepEqual(C.modelTask({ task: 'image_classifier', vocab: null, tied: null }), { task: 'image classifier', vocab: C.DASH, head: C.DASH });
  assert.deepEqual(C.modelTask({ name: 'old' }), { task: 'image classifier', vocab: C.DASH, head: C.DASH });
});

test('rsst and train series of an LM cell carry perplexity per round / epoch; image cells none', () => {
  const rounds = [
    { round: 2, pruned: { accuracy: 0.5, loss: Math.log(9), perplexity: 9 }, finetuned: { accuracy: 0.52, loss: Math.log(8) }, sparsity: 0.16 },
    { round: 1, pruned: { accuracy: 0.53, loss: Math.log(7) }, finetuned: { accuracy: 0.54, loss: Math.log(6), perplexity: 6 }, sparsity: 0.1 },
  ];
  const s = C.rsstSeries(lmResult(8, { series: rounds }));
  assert.deepEqual(s.round, [1, 2]);
  assert.deepEqual(s.perplexity.map((v) => Number(v.toFixed(9))), [6, 8]);
  assert.deepEqual(s.pruned_perplexity.map((v) => Number(v.toFixed(9))), [7, 9]);
  const img = C.rsstSeries({ task: 'image_classifier', metric: 'accuracy', series: rounds });
  assert.deepEqual(img.perplexity, [null, null]);
  assert.deepEqual(img.accuracy, [0.54, 0.52]);
  const t = C.trainSeries(lmResult(8, { series: [{ epoch: 1, train_loss: Math.log(20), test_loss: Math.log(16) }] }));
  assert.equal(Number(t.train_ppl[0].toFixed(9)), 20);
  assert.equal(Number(t.test_ppl[0].toFixed(9)), 16);
  assert.deepEqual(C.trainSeries({ series: [{ epoch: 1, train_loss: 1, test_loss: 1 }] }).test_ppl, [null]);
});
