// tests/browser/dashboard.mjs — the dashboard driven in headless Chromium against a real prunelabd.
// Run by tests/integration/test_browser.sh, which starts the daemon, finishes the jobs and sets:
//   BASE_URL, TOKEN, ABLATION_ID, SENSITIVITY_ID, FAILED_ID (a job whose cell failed),
//   SHRUNK_MODEL (an uploaded model whose layers have different dims), SCREENSHOT_DIR, PRUNELAB_WEB_DIR (playwright-core is resolved from its node_modules).
// Assumptions: Debian's /usr/bin/chromium; the page hooks of the dashboard contract
// (data-testid attributes, Plotly graph divs carrying .data). Every expected value comes from
// the API (fetched here, not through the pages), never from constants. Each check prints one
// line; the script exits 1 when any check failed, 2 on a setup error. Console errors and
// uncaught exceptions on every page are collected and fail the last check.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checks, assert, apiGet, near, parseShown, ordered, isSubsequence, matchShown, fmtList } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function setupError(msg) {
    console.log(`FAIL - dashboard.mjs: ${msg}`);
    process.exit(2);
}
function need(name) {
    const v = process.env[name];
    if (!v) setupError(`${name} is not set`);
    return v;
}
const BASE = need('BASE_URL').replace(/\/$/, '');
const TOKEN = need('TOKEN');
const ABL = Number(need('ABLATION_ID'));
const SENS = Number(need('SENSITIVITY_ID'));
const FAILED = process.env.FAILED_ID ? Number(process.env.FAILED_ID) : null;
const SHRUNK = process.env.SHRUNK_MODEL || null;
// causal LM jobs the daemon ran (an ablation, an rsst job and the train job that made their
// model) and an uploaded LM model recorded without a dataset; all optional
const LM_JOB = process.env.LM_JOB_ID ? Number(process.env.LM_JOB_ID) : null;
const LM_RSST = process.env.LM_RSST_ID ? Number(process.env.LM_RSST_ID) : null;
const LM_TRAIN = process.env.LM_TRAIN_ID ? Number(process.env.LM_TRAIN_ID) : null;
const LM_MODEL = process.env.LM_MODEL || null;
const SHOTS = need('SCREENSHOT_DIR');
const WEB_DIR = process.env.PRUNELAB_WEB_DIR || path.join(HERE, '..', '..', 'web');
const CHROMIUM = '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 800 };
const NARROW = { width: 390, height: 844 };
const WAIT_MS = 15000;

let chromium;
try {
    ({ chromium } = createRequire(path.join(WEB_DIR, 'package.json'))('playwright-core'));
} catch (e) {
    setupError(`cannot load playwright-core from ${WEB_DIR}/node_modules (npm ci --prefix web): ${e.message}`);
}
fs.mkdirSync(SHOTS, { recursive: true });

// ------------------------------------------------------------------ console errors
const pageErrors = [];
// A URL pattern whose failed-request console message is expected (a deliberate invalid input).
let expectedBadRequest = null;
function watch(page) {
    page.on('console', (msg) => {
        if (msg.type() !== 'error') return;
        const loc = msg.location() || {};
        if (expectedBadRequest && /^Failed to load resource/.test(msg.text()) && expectedBadRequest.test(loc.url || '')) {
            return;
        }
        const where = loc.url ? ` (${loc.url}:${loc.lineNumber})` : '';
        pageErrors.push(`console error on ${page.url()}: ${msg.text()}${where}`);
    });
    page.on('pageerror', (err) => pageErrors.push(`uncaught exception on ${page.url()}: ${err.message}`));
}

// ------------------------------------------------------------------ page helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() (async) until it returns a truthy value; throws describe() after timeoutMs.
async function pollFor(fn, describe, timeoutMs = WAIT_MS) {
    const end = Date.now() + timeoutMs;
    let last;
    for (;;) {
        last = await fn();
        if (last) return last;
        if (Date.now() > end) throw new Error(await describe());
        await sleep(150);
    }
}

async function open(page, hash, readySelector) {
    await page.goto(`${BASE}/${hash}`);
    if (readySelector) await page.waitForSelector(readySelector, { timeout: WAIT_MS });
}

// A snapshot of the Plotly graph div with the given data-testid, in plain JSON.
function graph(page, testid) {
    return page.evaluate((id) => {
        const el = document.querySelector(`[data-testid="${id}"]`);
        if (!el) return { missing: true };
        if (!Array.isArray(el.data)) return { notPlotly: true, tag: el.tagName };
        const plain = (v) => {
            if (v === undefined || v === null) return null;
            if (ArrayBuffer.isView(v)) return Array.from(v);
            if (Array.isArray(v)) return v.map(plain);
            if (typeof v === 'object') return JSON.parse(JSON.stringify(v));
            return v;
        };
        const rect = el.getBoundingClientRect();
        return {
            traces: el.data.map((t) => ({
                type: t.type || 'scatter',
                name: t.name === undefined ? null : String(t.name),
                x: plain(t.x),
                y: plain(t.y),
                z: plain(t.z),
                text: plain(t.text),
                texttemplate: plain(t.texttemplate),
                colorscale: plain(t.colorscale),
                zmid: plain(t.zmid),
                zmin: plain(t.zmin),
                zmax: plain(t.zmax),
            })),
            metric: el.getAttribute('data-metric'),
            width: rect.width,
            labels: [...el.querySelectorAll('.heatmap-label')].map((n) => n.textContent),
            bars: el.querySelectorAll('.barlayer .point').length,
        };
    }, testid);
}

function graphProblem(g, testid) {
    if (g.missing) return `no element [data-testid=${testid}]`;
    if (g.notPlotly) return `[data-testid=${testid}] (${g.tag}) is not a Plotly graph div (no .data)`;
    return null;
}

// Rows of a table as { attrs, cells: [text...] } plus the header texts.
function tableRows(page, testid) {
    return page.evaluate((id) => {
        const t = document.querySelector(`table[data-testid="${id}"]`);
        if (!t) return null;
        const head = [...t.querySelectorAll('thead th')].map((th) => th.textContent.trim());
        const rows = [...t.querySelectorAll('tbody tr')].map((tr) => ({
            idx: tr.getAttribute('data-cell-idx'),
            text: tr.textContent,
            cells: [...tr.children].map((td) => td.textContent.trim()),
            cols: Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map((td) => [td.getAttribute('data-col'), td.textContent.trim()])),
        }));
        return { head, rows };
    }, testid);
}

function visibleJobIds(page) {
    return page.$$eval('table[data-testid=jobs-table] tbody tr[data-job-id]', (trs) =>
        trs.filter((tr) => tr.offsetParent !== null).map((tr) => Number(tr.getAttribute('data-job-id'))));
}

const sameSet = (a, b) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

// ------------------------------------------------------------------ expected values
const metricOf = (cell, metric) => (cell.state === 'done' && cell.result ? cell.result[metric] : null);
const cellComponent = (cell) => cell.spec.component ?? cell.spec.components;

// The ablation grid from the API: components in request order, rates ascending, z[i][j].
function ablationGrid(job, cells, metric) {
    const comps = job.spec.components;
    const rates = [...new Set(job.spec.rates.map(Number))].sort((a, b) => a - b);
    const z = comps.map((c) => rates.map((r) => {
        const cell = cells.find((k) => cellComponent(k) === c && near(k.spec.rate, r));
        return cell ? metricOf(cell, metric) : null;
    }));
    return { comps, rates, z };
}

function checkGrid(g, want, metric) {
    const hm = g.traces[0];
    assert(hm && hm.type === 'heatmap', `data[0].type is ${hm && hm.type}, want heatmap`);
    assert(Array.isArray(hm.x) && hm.x.length === want.rates.length && hm.x.every((v, j) => typeof v === 'number' && near(v, want.rates[j])),
        `x = ${JSON.stringify(hm.x)}, want the rates as numbers ascending ${fmtList(want.rates)}`);
    assert(Array.isArray(hm.y) && JSON.stringify(hm.y) === JSON.stringify(want.comps),
        `y = ${JSON.stringify(hm.y)}, want the components in request order ${JSON.stringify(want.comps)}`);
    assert(Array.isArray(hm.z) && hm.z.length === want.comps.length && hm.z.every((row) => Array.isArray(row) && row.length === want.rates.length),
        `z is not ${want.comps.length} x ${want.rates.length}: ${JSON.stringify(hm.z)}`);
    want.comps.forEach((c, i) => want.rates.forEach((r, j) => {
        assert(near(hm.z[i][j], want.z[i][j], 1e-9),
            `z[${i}][${j}] (${c} at rate ${r}) = ${hm.z[i][j]}, the API's ${metric} is ${want.z[i][j]}`);
    }));
    return hm;
}

// Colour-blind-safe Plotly scales: diverging ones (for delta, centred at 0) and sequential ones.
const DIVERGING = ['RdBu', 'PuOr', 'BrBG', 'PRGn', 'RdYlBu'];
const SEQUENTIAL_SAFE = ['Viridis', 'Cividis'];
// A named scale must be in `names`; an explicit one needs at least 3 stops. Null when fine.
function scaleProblem(scale, names) {
    if (typeof scale === 'string') return names.includes(scale) ? null : `${scale} is not one of ${names.join(', ')}`;
    if (Array.isArray(scale) && scale.length >= 3) return null;
    return `colorscale ${JSON.stringify(scale)}`;
}

const gridFilled = (g) => g && !g.missing && !g.notPlotly && g.traces[0] && Array.isArray(g.traces[0].z) &&
    g.traces[0].z.length > 0 && g.traces[0].z.every((row) => Array.isArray(row) && row.length > 0 && row.every((v) => typeof v === 'number'));

// ------------------------------------------------------------------ the checks
async function main() {
    const checks = new Checks();
    const api = (p) => apiGet(BASE, TOKEN, p);

    const ablJob = await api(`/api/v1/jobs/${ABL}`);
    const ablCells = (await api(`/api/v1/jobs/${ABL}/cells`)).cells;
    const sensJob = await api(`/api/v1/jobs/${SENS}`);
    const sensCells = (await api(`/api/v1/jobs/${SENS}/cells`)).cells;
    if (ablJob.state !== 'done' || sensJob.state !== 'done') {
        setupError(`jobs not done: ablation ${ablJob.state}, sensitivity ${sensJob.state}`);
    }
    const modelName = ablJob.spec.model;
    const model = await api(`/api/v1/models/${encodeURIComponent(modelName)}`);

    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    watch(page);

    // ---------------------------------------------------------- jobs (no token yet)
    await checks.run('jobs table lists the ablation and the sensitivity job, done', async () => {
        await open(page, '#/jobs', `table[data-testid=jobs-table] tbody tr[data-job-id="${SENS}"]`);
        const notes = [];
        for (const job of [ablJob, sensJob]) {
            const cols = await page.$eval(`table[data-testid=jobs-table] tbody tr[data-job-id="${job.id}"]`, (tr) =>
                Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map((td) => [td.getAttribute('data-col'), td.textContent.trim()])));
            for (const c of ['type', 'model', 'owner', 'state', 'cells', 'progress', 'created', 'duration']) {
                assert(c in cols, `job ${job.id}: no td[data-col=${c}] (have ${Object.keys(cols).join(', ')})`);
            }
            assert(/\bdone\b/i.test(cols.state), `job ${job.id}: state column shows "${cols.state}", want done`);
            assert(cols.type.includes(job.type), `job ${job.id}: type column shows "${cols.type}", want ${job.type}`);
            assert(cols.model.includes(job.model), `job ${job.id}: model column shows "${cols.model}", want ${job.model}`);
            assert(cols.owner.includes(job.owner), `job ${job.id}: owner column shows "${cols.owner}", want ${job.owner}`);
            assert(new RegExp(`\\b${job.cells}\\b`).test(cols.cells), `job ${job.id}: cells column "${cols.cells}" lacks the total ${job.cells}`);
            const link = await page.$(`table[data-testid=jobs-table] tr[data-job-id="${job.id}"] a[href="#/jobs/${job.id}"]`);
            assert(link, `job ${job.id}: the row has no link to #/jobs/${job.id}`);
            notes.push(`${job.id}: ${cols.state}, cells "${cols.cells}"`);
        }
        return notes.join('; ');
    });

    await checks.run('no cancel/retry buttons without a token', async () => {
        const n = await page.$$eval('table[data-testid=jobs-table] button[data-action=cancel], table[data-testid=jobs-table] button[data-action=retry]', (b) => b.length);
        assert(n === 0, `${n} cancel/retry buttons shown with no token stored`);
    });

    await checks.run('jobs filters: type and state', async () => {
        const all = (await api('/api/v1/jobs?limit=100')).jobs;
        await page.selectOption('select[data-testid=filter-type]', 'sensitivity');
        const wantType = all.filter((j) => j.type === 'sensitivity').map((j) => j.id);
        await pollFor(async () => sameSet(await visibleJobIds(page), wantType),
            async () => `type=sensitivity shows jobs ${JSON.stringify(await visibleJobIds(page))}, want ${JSON.stringify(wantType)}`);
        await page.selectOption('select[data-testid=filter-type]', { index: 0 });
        await page.selectOption('select[data-testid=filter-state]', 'done');
        const wantState = all.filter((j) => j.state === 'done').map((j) => j.id);
        await pollFor(async () => sameSet(await visibleJobIds(page), wantState),
            async () => `state=done shows jobs ${JSON.stringify(await visibleJobIds(page))}, want ${JSON.stringify(wantState)}`);
        await page.selectOption('select[data-testid=filter-state]', { index: 0 });
        await pollFor(async () => (await visibleJobIds(page)).length === all.length,
            async () => `after resetting the filters ${(await visibleJobIds(page)).length} rows, want ${all.length}`);
        return `sensitivity -> ${wantType.length} row(s), done -> ${wantState.length} row(s)`;
    });

    // ---------------------------------------------------------- ablation job
    await checks.run('a job row links to its page', async () => {
        await page.click(`table[data-testid=jobs-table] tr[data-job-id="${ABL}"] a[href="#/jobs/${ABL}"]`);
        await page.waitForSelector('h1[data-testid=job-title]');
        const hash = await page.evaluate(() => location.hash);
        assert(hash === `#/jobs/${ABL}`, `location.hash is ${hash}`);
        const title = (await page.textContent('h1[data-testid=job-title]')).trim();
        assert(title.includes(String(ABL)), `job title "${title}" does not name job ${ABL}`);
        return `"${title}"`;
    });

    await checks.run('job summary shows the state and counts', async () => {
        const text = await page.textContent('div[data-testid=job-summary]');
        assert(/\bdone\b/i.test(text), `summary "${text.trim().slice(0, 200)}" lacks the state done`);
        assert(new RegExp(`\\b${ablJob.cells}\\b`).test(text), `summary lacks the cell count ${ablJob.cells}`);
    });

    const wantAcc = ablationGrid(ablJob, ablCells, 'accuracy');
    const wantDelta = ablationGrid(ablJob, ablCells, 'delta_accuracy');
    const nGrid = wantAcc.comps.length * wantAcc.rates.length;
    await checks.run(`heatmap: one cell per grid point (${wantAcc.comps.length} x ${wantAcc.rates.length}) with the API's accuracies`, async () => {
        const g = await pollFor(async () => {
            const s = await graph(page, 'heatmap');
            return gridFilled(s) ? s : null;
        }, async () => graphProblem(await graph(page, 'heatmap'), 'heatmap') || `heatmap never filled: ${JSON.stringify((await graph(page, 'heatmap')).traces?.[0]?.z)}`);
        assert(g.metric === 'accuracy', `data-metric is "${g.metric}", want accuracy first`);
        checkGrid(g, wantAcc, 'accuracy');
        return `z = ${JSON.stringify(g.traces[0].z)}`;
    });

    await checks.run('heatmap shows the values in its cells', async () => {
        const g = await graph(page, 'heatmap');
        const hm = g.traces[0];
        assert(hm.texttemplate || (Array.isArray(hm.text) && hm.text.flat().length === nGrid),
            `neither texttemplate nor a text per cell (texttemplate ${JSON.stringify(hm.texttemplate)}, text ${JSON.stringify(hm.text)})`);
        assert(g.labels.length === nGrid, `${g.labels.length} labels drawn (.heatmap-label), want ${nGrid}`);
        const miss = matchShown(g.labels, wantAcc.z.flat());
        assert(!miss, miss);
        return `labels ${JSON.stringify(g.labels)}`;
    });

    await checks.run('heatmap toggle switches to delta accuracy, centred at 0, and back', async () => {
        await page.click('button[data-testid=heatmap-toggle]');
        const g = await pollFor(async () => {
            const s = await graph(page, 'heatmap');
            return s.metric === 'delta_accuracy' && gridFilled(s) ? s : null;
        }, async () => `after the toggle data-metric is "${(await graph(page, 'heatmap')).metric}"`);
        const hm = checkGrid(g, wantDelta, 'delta_accuracy');
        const scale = scaleProblem(hm.colorscale, DIVERGING);
        assert(!scale, `delta colour scale: ${scale}`);
        const centred = hm.zmid === 0 || (typeof hm.zmin === 'number' && typeof hm.zmax === 'number' && near(hm.zmin, -hm.zmax));
        assert(centred, `delta scale not centred at 0 (zmid ${hm.zmid}, zmin ${hm.zmin}, zmax ${hm.zmax})`);
        const miss = matchShown(g.labels, wantDelta.z.flat());
        assert(!miss, `delta labels: ${miss}`);
        await page.click('button[data-testid=heatmap-toggle]');
        const back = await pollFor(async () => {
            const s = await graph(page, 'heatmap');
            return s.metric === 'accuracy' && gridFilled(s) ? s : null;
        }, async () => `second toggle left data-metric "${(await graph(page, 'heatmap')).metric}"`);
        checkGrid(back, wantAcc, 'accuracy');
        const accScale = scaleProblem(back.traces[0].colorscale, [...DIVERGING, ...SEQUENTIAL_SAFE]);
        assert(!accScale, `accuracy colour scale: ${accScale}`);
        return `z = ${JSON.stringify(hm.z)}, labels ${JSON.stringify(g.labels)}`;
    });

    await checks.run('accuracy-vs-rate lines: one trace per component with the API values', async () => {
        const g = await graph(page, 'rate-lines');
        const p = graphProblem(g, 'rate-lines');
        assert(!p, p);
        assert(g.traces.length === wantAcc.comps.length, `${g.traces.length} traces, want ${wantAcc.comps.length} (${g.traces.map((t) => t.name).join(', ')})`);
        wantAcc.comps.forEach((c, i) => {
            const t = g.traces.find((k) => k.name && k.name.includes(c));
            assert(t, `no trace named for ${c} (names ${g.traces.map((k) => k.name).join(', ')})`);
            assert(t.x.length === wantAcc.rates.length && t.x.every((v, j) => near(Number(v), wantAcc.rates[j])), `${c}: x ${JSON.stringify(t.x)}, want ${fmtList(wantAcc.rates)}`);
            assert(t.y.every((v, j) => near(v, wantAcc.z[i][j])), `${c}: y ${JSON.stringify(t.y)}, want ${fmtList(wantAcc.z[i])}`);
        });
    });

    const checkCellsTable = async (job, cells) => {
        const t = await pollFor(async () => {
            const s = await tableRows(page, 'cells-table');
            return s && s.rows.length === cells.length ? s : null;
        }, async () => {
            const s = await tableRows(page, 'cells-table');
            return s ? `${s.rows.length} rows, want ${cells.length}` : 'no table[data-testid=cells-table]';
        });
        const idx = t.rows.map((r) => r.idx);
        assert(sameSet(idx, cells.map((c) => String(c.idx))), `data-cell-idx ${JSON.stringify(idx)}, want the cells' idx ${JSON.stringify(cells.map((c) => c.idx))}`);
        return t;
    };

    await checks.run('ablation cells table: one row per cell, sortable by accuracy', async () => {
        const t = await checkCellsTable(ablJob, ablCells);
        const col = t.head.findIndex((h) => /^accuracy\b/i.test(h));
        assert(col >= 0, `no "accuracy" column header (headers ${JSON.stringify(t.head)})`);
        const th = page.locator('table[data-testid=cells-table] thead th').nth(col);
        const values = async () => (await tableRows(page, 'cells-table')).rows.map((r) => parseShown(r.cells[col])?.value);
        await th.click();
        const first = await pollFor(async () => {
            const v = await values();
            return ordered(v, 1) || ordered(v, -1) ? v : null;
        }, async () => `after one click the accuracy column reads ${JSON.stringify(await values())}, not sorted`);
        const dir = ordered(first, 1) && !ordered(first, -1) ? 1 : -1;
        await th.click();
        const second = await pollFor(async () => {
            const v = await values();
            return ordered(v, -dir) ? v : null;
        }, async () => `a second click did not reverse the order: ${JSON.stringify(await values())}`);
        const want = ablCells.map((c) => c.result.accuracy).sort((a, b) => a - b);
        const got = [...second].sort((a, b) => a - b);
        assert(got.every((v, i) => Math.abs(v - want[i]) < 0.01), `the column shows ${JSON.stringify(got)}, the API ${JSON.stringify(want)}`);
        return `${first.join(', ')} then ${second.join(', ')}`;
    });

    const checkCsvLink = async (id, n) => {
        const href = await page.getAttribute('a[data-testid=csv-link]', 'href');
        assert(href, 'no a[data-testid=csv-link] with an href');
        const url = new URL(href, `${BASE}/`);
        assert(url.pathname === `/api/v1/jobs/${id}/results.csv`, `csv link points at ${url.pathname}`);
        const res = await fetch(url);
        const body = await res.text();
        assert(res.status === 200, `csv link answered ${res.status}`);
        assert(/^text\/csv/.test(res.headers.get('content-type') || ''), `content-type ${res.headers.get('content-type')}`);
        const lines = body.trim().split('\n');
        assert(/^idx,/.test(lines[0]) && lines.length === n + 1, `CSV has ${lines.length} lines (want header + ${n}): ${body.slice(0, 200)}`);
        return `${url.pathname}: ${lines.length} lines`;
    };
    await checks.run('ablation CSV link returns the results CSV', () => checkCsvLink(ABL, ablCells.length));

    // ---------------------------------------------------------- sensitivity job
    await checks.run('sensitivity chart: one bar per layer per component with the API values', async () => {
        await open(page, `#/jobs/${SENS}`, 'h1[data-testid=job-title]');
        const comps = Array.isArray(sensJob.spec.components) ? sensJob.spec.components : [sensJob.spec.components];
        const layers = [...new Set(sensCells.map((c) => c.spec.layer))].sort((a, b) => a - b);
        const value = (c, l, m) => metricOf(sensCells.find((k) => cellComponent(k) === c && k.spec.layer === l), m);
        const g = await pollFor(async () => {
            const s = await graph(page, 'sensitivity-chart');
            return s.traces && s.traces.length === comps.length && s.bars === comps.length * layers.length ? s : null;
        }, async () => {
            const s = await graph(page, 'sensitivity-chart');
            return graphProblem(s, 'sensitivity-chart') || `${s.traces.length} traces (want ${comps.length}), ${s.bars} bars drawn (want ${comps.length * layers.length})`;
        });
        let metric = null;
        for (const c of comps) {
            const t = g.traces.find((k) => k.name && k.name.includes(c));
            assert(t, `no trace named for ${c} (names ${g.traces.map((k) => k.name).join(', ')})`);
            assert(t.type === 'bar', `${c}: trace type ${t.type}`);
            assert(t.x.length === layers.length && t.x.every((v, i) => Number(v) === layers[i]), `${c}: x ${JSON.stringify(t.x)}, want layers ${JSON.stringify(layers)}`);
            const acc = layers.map((l) => value(c, l, 'accuracy'));
            const delta = layers.map((l) => value(c, l, 'delta_accuracy'));
            const m = t.y.every((v, i) => near(v, acc[i])) ? 'accuracy' : t.y.every((v, i) => near(v, delta[i])) ? 'delta_accuracy' : null;
            assert(m, `${c}: y ${JSON.stringify(t.y)}, the API's accuracy ${fmtList(acc)} / delta ${fmtList(delta)}`);
            assert(!metric || m === metric, `traces mix ${metric} and ${m}`);
            metric = m;
        }
        return `${g.traces.length} traces x ${layers.length} layers, ${g.bars} bars, y = ${metric}`;
    });
    await checks.run('sensitivity cells table and CSV link', async () => {
        await checkCellsTable(sensJob, sensCells);
        return checkCsvLink(SENS, sensCells.length);
    });

    if (FAILED !== null) {
        await checks.run('a failed cell shows its error message', async () => {
            const cells = (await api(`/api/v1/jobs/${FAILED}/cells`)).cells;
            const bad = cells.find((c) => c.state === 'failed');
            assert(bad && bad.error && bad.error.message, `job ${FAILED} has no failed cell with a message`);
            await open(page, `#/jobs/${FAILED}`, 'table[data-testid=cells-table]');
            const sel = `table[data-testid=cells-table] tr[data-cell-idx="${bad.idx}"] td[data-col=error]`;
            const text = await pollFor(async () => {
                const el = await page.$(sel);
                return el ? (await el.textContent()).trim() || null : null;
            }, async () => `no non-empty ${sel}`);
            const head = bad.error.message.slice(0, 40);
            assert(text.includes(head), `error cell shows "${text.slice(0, 120)}", the API's message starts "${head}"`);
            return `"${text.slice(0, 60)}"`;
        });
    }

    // ---------------------------------------------------------- a causal LM job
    if (LM_JOB) {
        const lmJob = await api(`/api/v1/jobs/${LM_JOB}`);
        const lmCells = (await api(`/api/v1/jobs/${LM_JOB}/cells`)).cells;
        const wantPpl = ablationGrid(lmJob, lmCells, 'perplexity');
        const wantDp = ablationGrid(lmJob, lmCells, 'delta_perplexity');
        const base = lmCells.find((c) => c.result && Number.isFinite(c.result.baseline_perplexity)).result.baseline_perplexity;
        const RED = '#67001f';
        const top = (g) => { const cs = g.traces[0].colorscale; return Array.isArray(cs) ? cs[cs.length - 1][1] : String(cs); };
        await checks.run(`LM job ${LM_JOB}: a perplexity heatmap, red at the high (worse) end, centred at the baseline`, async () => {
            await open(page, `#/jobs/${LM_JOB}`, 'div[data-testid=heatmap]');
            const g = await pollFor(async () => {
                const s = await graph(page, 'heatmap');
                return gridFilled(s) ? s : null;
            }, async () => graphProblem(await graph(page, 'heatmap'), 'heatmap') || 'the LM heatmap never filled');
            assert(g.metric === 'perplexity', `data-metric is "${g.metric}", want perplexity`);
            checkGrid(g, wantPpl, 'perplexity');
            assert(top(g) === RED, `the top of the colour scale is ${top(g)}, want red ${RED} (higher perplexity is worse)`);
            assert(g.traces[0].zmid === base, `zmid ${g.traces[0].zmid}, want the baseline perplexity ${base}`);
            return `z = ${JSON.stringify(g.traces[0].z)}`;
        });
        await checks.run('LM heatmap toggle: delta perplexity, centred at 0, red still at the top', async () => {
            await page.click('button[data-testid=heatmap-toggle]');
            const g = await pollFor(async () => {
                const s = await graph(page, 'heatmap');
                return s.metric === 'delta_perplexity' && gridFilled(s) ? s : null;
            }, async () => `after the toggle data-metric is "${(await graph(page, 'heatmap')).metric}"`);
            checkGrid(g, wantDp, 'delta_perplexity');
            assert(g.traces[0].zmid === 0, `zmid ${g.traces[0].zmid}, want 0`);
            assert(top(g) === RED, `the top of the delta scale is ${top(g)}, want red`);
            const label = await page.textContent('button[data-testid=heatmap-toggle]');
            assert(/perplexity/i.test(label), `the toggle says "${label}"`);
        });
        await checks.run('LM job: perplexity rate lines, tokens/s in the summary and the table', async () => {
            const g = await graph(page, 'rate-lines');
            assert(g.metric === 'perplexity', `rate-lines data-metric "${g.metric}"`);
            const ys = g.traces.flatMap((t) => t.y).filter((v) => v !== null);
            const want = wantPpl.z.flat().filter((v) => v !== null);
            assert(sameSet(ys, want), `rate lines ${JSON.stringify(ys)}, want the perplexities ${JSON.stringify(want)}`);
            const summary = await page.textContent('div[data-testid=job-summary]');
            assert(/tokens\/s/.test(summary) && /baseline perplexity/.test(summary), `summary "${summary.trim().slice(0, 300)}"`);
            for (const col of ['perplexity', 'delta_perplexity', 'tokens_per_s'])
                assert(await page.$(`table[data-testid=cells-table] th[data-col=${col}]`), `no ${col} column in the cell table`);
        });
        await checks.run(`LM job ${LM_JOB}: one heatmap cell per grid point, every one a finished cell`, async () => {
            assert(lmCells.length === 4 && lmCells.every((c) => c.state === 'done'), `cells ${JSON.stringify(lmCells.map((c) => c.state))}`);
            assert(wantPpl.z.flat().every((v) => Number.isFinite(v)), `the API's grid ${JSON.stringify(wantPpl.z)} has holes`);
        });
    }
    if (LM_RSST) {
        await checks.run(`LM rsst job ${LM_RSST}: rounds charted in perplexity (the cell's series)`, async () => {
            const c = (await api(`/api/v1/jobs/${LM_RSST}/cells`)).cells[0];
            const want = c.result.series.slice().sort((a, b) => a.round - b.round).map((r) => r.finetuned.perplexity);
            assert(want.length === 2 && want.every(Number.isFinite), `the API's series perplexities ${JSON.stringify(want)}`);
            await open(page, `#/jobs/${LM_RSST}`, 'div[data-testid=rsst-chart]');
            const g = await pollFor(async () => {
                const s = await graph(page, 'rsst-chart');
                return s.traces && s.traces.length ? s : null;
            }, async () => graphProblem(await graph(page, 'rsst-chart'), 'rsst-chart') || 'the rsst chart has no traces');
            assert(g.metric === 'perplexity', `rsst-chart data-metric "${g.metric}", want perplexity`);
            const ft = g.traces.find((t) => /perplexity after fine-tune/.test(t.name || ''));
            assert(ft, `no "perplexity after fine-tune" trace among ${JSON.stringify(g.traces.map((t) => t.name))}`);
            assert(ft.y.length === want.length && ft.y.every((v, i) => near(v, want[i], 1e-9)), `trace y ${JSON.stringify(ft.y)}, want ${JSON.stringify(want)}`);
            return `perplexity per round ${JSON.stringify(ft.y)}`;
        });
    }
    if (LM_TRAIN) {
        await checks.run(`LM train job ${LM_TRAIN}: the training curves' second axis is perplexity`, async () => {
            const c = (await api(`/api/v1/jobs/${LM_TRAIN}/cells`)).cells[0];
            const want = c.result.series.map((r) => Math.exp(r.test_loss));
            await open(page, `#/jobs/${LM_TRAIN}`, 'div[data-testid=train-chart]');
            const g = await pollFor(async () => {
                const s = await graph(page, 'train-chart');
                return s.metric === 'perplexity' && s.traces && s.traces.length ? s : null;
            }, async () => `train-chart data-metric "${(await graph(page, 'train-chart')).metric}", want perplexity`);
            const t = g.traces.find((x) => x.name === 'test perplexity');
            assert(t && t.y.every((v, i) => near(v, want[i], 1e-9)), `test perplexity trace ${JSON.stringify(t && t.y)}, want ${JSON.stringify(want)}`);
        });
    }

    // ---------------------------------------------------------- models (no token yet)
    // Per-layer dims as the API reports them: trained models carry {E, N, K}, uploads the
    // engine's inspect names {d_inner, d_state, d_conv}.
    const layerDims = (l) => [l.E ?? l.d_inner, l.N ?? l.d_state, l.K ?? l.d_conv];
    const modelNames = [modelName, ...(SHRUNK ? [SHRUNK] : [])];
    await checks.run(`models page lists ${modelNames.join(' and ')} with per-layer E/N/K`, async () => {
        await open(page, '#/models', `table[data-testid=models-table] tr[data-model="${modelNames.at(-1)}"]`);
        const notes = [];
        for (const name of modelNames) {
            const m = name === modelName ? model : await api(`/api/v1/models/${encodeURIComponent(name)}`);
            const row = `table[data-testid=models-table] tr[data-model="${name}"]`;
            assert(await page.$(row), `no ${row}`);
            const text = await page.textContent(row);
            const layers = m.info && m.info.layers;
            assert(Array.isArray(layers) && layers.length > 0, `the API's model ${name} has no info.layers`);
            const want = layers.flatMap(layerDims);
            assert(want.every(Number.isInteger), `model ${name}: the API's layers ${JSON.stringify(layers)} lack E/N/K`);
            const shown = (text.match(/\d+/g) || []).map(Number);
            assert(isSubsequence(want, shown), `row "${text.trim().slice(0, 240)}" does not show E/N/K ${JSON.stringify(want)} per layer in order`);
            const del = await page.$(`${row} button[data-action=delete]`);
            assert(!del, `model ${name}: a delete button is shown with no token stored`);
            notes.push(`${name} ${layers.map((l, i) => `L${i} ${layerDims(l).join('/')}`).join(', ')}`);
        }
        assert(await page.$('form[data-testid=model-upload]'), 'no form[data-testid=model-upload]');
        return notes.join('; ');
    });

    if (LM_MODEL) {
        await checks.run(`models page: ${LM_MODEL} shows task causal LM, its vocabulary and tied head`, async () => {
            const m = await api(`/api/v1/models/${encodeURIComponent(LM_MODEL)}`);
            const row = `table[data-testid=models-table] tr[data-model="${LM_MODEL}"]`;
            await page.waitForSelector(row, { timeout: WAIT_MS });
            const cols = await page.$$eval(`${row} td[data-col]`, (tds) => Object.fromEntries(tds.map((td) => [td.getAttribute('data-col'), td.textContent.trim()])));
            assert(m.task === 'causal_lm', `the API says task ${m.task}`);
            assert(cols.task === 'causal LM', `task cell "${cols.task}"`);
            assert(cols.vocab.replace(/,/g, '') === String(m.vocab), `vocab cell "${cols.vocab}", the API's ${m.vocab}`);
            assert(cols.head === (m.tied ? 'tied' : 'untied'), `head cell "${cols.head}", tied ${m.tied}`);
            const img = await page.$$eval(`table[data-testid=models-table] tr[data-model="${modelName}"] td[data-col=task]`, (t) => t.map((x) => x.textContent.trim()));
            assert(img[0] === 'image classifier', `the image model's task cell "${img[0]}"`);
            return `${cols.task} · vocab ${cols.vocab} · ${cols.head} head`;
        });
    }

    // ---------------------------------------------------------- token
    await checks.run('token entered once in the header is kept across a reload', async () => {
        await open(page, '#/jobs', 'input[data-testid=token-input]');
        await page.fill('input[data-testid=token-input]', TOKEN);
        await page.click('button[data-testid=token-save]');
        const stored = await page.evaluate(() => localStorage.getItem('prunelab.token'));
        assert(stored === TOKEN, `localStorage prunelab.token is ${JSON.stringify(stored)}`);
        await page.reload();
        await page.waitForSelector('table[data-testid=jobs-table]');
        const after = await page.evaluate(() => localStorage.getItem('prunelab.token'));
        assert(after === TOKEN, `after a reload localStorage prunelab.token is ${JSON.stringify(after)}`);
        if (FAILED !== null) {
            await page.waitForSelector(`table[data-testid=jobs-table] tr[data-job-id="${FAILED}"] button[data-action=retry]`)
                .catch(() => { throw new Error(`with a token stored the failed job ${FAILED} shows no retry button`); });
        }
    });

    await checks.run('models page offers delete with a token', async () => {
        await open(page, '#/models', `table[data-testid=models-table] tr[data-model="${modelName}"] button[data-action=delete]`);
    });

    // ---------------------------------------------------------- new experiment
    let newId = null;
    await checks.run('new-experiment form: ablation preset, tiny grid, cell count by dry run, submit', async () => {
        const before = (await api('/api/v1/jobs?limit=100')).jobs.map((j) => j.id);
        await open(page, '#/new', 'form[data-testid=new-job-form]');
        const form = page.locator('form[data-testid=new-job-form]');
        const options = await form.locator('select[name=preset] option').evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent })));
        const preset = options.find((o) => /ablation/i.test(`${o.value} ${o.text}`));
        assert(preset, `no ablation preset among ${JSON.stringify(options)}`);
        for (const want of [/sensitiv/i, /joint/i, /stage ?1|rsst/i, /stage ?2|hybrid/i, /stage ?3|lite/i, /custom/i]) {
            assert(options.some((o) => want.test(`${o.value} ${o.text}`)), `no preset matching ${want} among ${JSON.stringify(options.map((o) => o.text))}`);
        }
        await form.locator('select[name=preset]').selectOption(preset.value);
        await pollFor(async () => (await form.locator('select[name=type]').inputValue()) === 'ablation',
            async () => `after the ablation preset select[name=type] is "${await form.locator('select[name=type]').inputValue()}"`);
        await form.locator(`select[name=model] option[value="${modelName}"]`).waitFor({ state: 'attached' });
        await form.locator('select[name=model]').selectOption(modelName);
        const boxes = form.locator('input[name=component]');
        const n = await boxes.count();
        assert(n > 0, 'no input[name=component] checkboxes');
        for (let i = 0; i < n; i++) {
            const b = boxes.nth(i);
            await b.setChecked((await b.getAttribute('value')) === 'mlp');
        }
        const seeds = form.locator('input[name=seeds]');
        if (await seeds.count()) await seeds.fill('1');

        // An invalid rate: the dry run's error is shown, in an alert.
        expectedBadRequest = /\/api\/v1\/jobs\?dry_run=1/;
        const rates = form.locator('input[name=rates]');
        await rates.fill('0.5, 1.5');
        await rates.press('Tab');
        const err = page.locator('[data-testid=form-error]');
        await pollFor(async () => (await err.count()) && (await err.first().textContent()).trim().length > 0,
            async () => 'rate 1.5 shows no message in [data-testid=form-error]');
        // role=alert on the element, around it, or on the box inside it that holds the message
        const alerted = await err.first().evaluate((e) => Boolean(e.closest('[role=alert]') ||
            [...e.querySelectorAll('[role=alert]')].some((a) => a.textContent.trim().length > 0)));
        assert(alerted, '[data-testid=form-error] shows the message outside any role=alert element');
        const errText = (await err.first().textContent()).trim();

        await rates.fill('0.5, 0.7');
        await rates.press('Tab');
        const count = page.locator('output[data-testid=cell-count]');
        const shown = await pollFor(async () => {
            const t = (await count.count()) ? (await count.textContent()).trim() : '';
            return /\b2\b/.test(t) ? t : null;
        }, async () => `cell count shows "${(await count.count()) ? await count.textContent() : '(no output[data-testid=cell-count])'}", want 2 (mlp x 0.5, 0.7)`);
        expectedBadRequest = null;
        const errAfter = (await err.count()) ? (await err.first().textContent()).trim() : '';
        assert(!errAfter, `the form still shows the error "${errAfter}" for valid input`);
        const mid = (await api('/api/v1/jobs?limit=100')).jobs.map((j) => j.id);
        assert(sameSet(mid, before), `the dry run created jobs: ${JSON.stringify(mid.filter((id) => !before.includes(id)))}`);

        await form.locator('button[type=submit]').click();
        await page.waitForFunction((ids) => {
            const m = location.hash.match(/^#\/jobs\/(\d+)$/);
            return m && !ids.includes(Number(m[1]));
        }, before, { timeout: WAIT_MS }).catch(async () => {
            const e = (await err.count()) ? (await err.first().textContent()).trim() : '';
            throw new Error(`submit did not navigate to a new job's page (hash ${await page.evaluate(() => location.hash)}${e ? `, error "${e}"` : ''})`);
        });
        newId = Number((await page.evaluate(() => location.hash)).split('/').pop());
        const job = await api(`/api/v1/jobs/${newId}`);
        assert(job.type === 'ablation' && job.spec.model === modelName, `job ${newId} is ${job.type} on ${job.spec.model}`);
        assert(JSON.stringify(job.spec.components) === '["mlp"]', `job ${newId} components ${JSON.stringify(job.spec.components)}`);
        assert(sameSet(job.spec.rates.map(String), ['0.5', '0.7']), `job ${newId} rates ${JSON.stringify(job.spec.rates)}`);
        assert(job.cells === 2, `job ${newId} has ${job.cells} cells; the form showed "${shown}"`);
        await page.waitForSelector('h1[data-testid=job-title]');
        return `rate 1.5 -> "${errText.slice(0, 60)}"; count "${shown}"; job ${newId}`;
    });

    if (LM_MODEL) {
        await checks.run(`new-experiment form on the LM ${LM_MODEL} (no recorded dataset): a token dataset filled in, the dry run counts cells`, async () => {
            // the preset's components (mlp) do not exist in the HF-shaped LM: that dry run is a 400
            expectedBadRequest = /\/api\/v1\/jobs\?dry_run=1/;
            await open(page, '#/new', 'form[data-testid=new-job-form]');
            const form = page.locator('form[data-testid=new-job-form]');
            await form.locator(`select[name=model] option[value="${LM_MODEL}"]`).waitFor({ state: 'attached' });
            await form.locator('select[name=model]').selectOption(LM_MODEL);
            const ds = form.locator('input[name=dataset]');
            const value = await pollFor(async () => {
                const v = await ds.inputValue();
                return v ? v : null;
            }, async () => 'input[name=dataset] stays empty for an LM without a recorded dataset');
            const listed = (await api('/api/v1/datasets')).datasets.filter((d) => d.kind === 'tokens' || d.kind === 'text').map((d) => d.name);
            assert(listed.includes(value), `dataset "${value}" is not one of the API's token datasets ${JSON.stringify(listed)}`);
            const offered = await form.locator('datalist#nj-dataset-list option').evaluateAll((os) => os.map((o) => o.value));
            assert(offered.length && offered.every((v) => listed.includes(v)), `suggestions ${JSON.stringify(offered)} are not all token datasets`);
            const boxes = form.locator('input[name=component]');
            for (let i = 0; i < await boxes.count(); i++) {
                const b = boxes.nth(i);
                await b.setChecked(['in_proj', 'linear_in'].includes(await b.getAttribute('value')));
            }
            const rates = form.locator('input[name=rates]');
            await rates.fill('0.5');
            await rates.press('Tab');
            const count = page.locator('output[data-testid=cell-count]');
            const err = page.locator('[data-testid=form-error]');
            const shown = await pollFor(async () => {
                const t = (await count.count()) ? (await count.textContent()).trim() : '';
                return /\b1\b/.test(t) ? t : null;
            }, async () => `cell count "${await count.textContent()}", error "${(await err.count()) ? (await err.first().textContent()).trim() : ''}"`);
            expectedBadRequest = null;
            const e = (await err.count()) ? (await err.first().textContent()).trim() : '';
            assert(!e, `the form shows "${e}"`);
            return `dataset ${value}; count "${shown}"`;
        });
    }

    if (newId !== null) {
        await checks.run('the submitted job appears in the jobs table', async () => {
            await open(page, '#/jobs', `table[data-testid=jobs-table] tbody tr[data-job-id="${newId}"]`);
        });
    }

    // A job whose cells fine-tune for a while, opened as soon as it is submitted: its page must
    // fill in by itself (long-poll) and end with the API's values.
    await checks.run('a running job\'s heatmap fills in live, without a reload', async () => {
        const res = await fetch(`${BASE}/api/v1/jobs`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({
                type: 'ablation', model: modelName, components: ['linear_out', 'mlp'], rates: [0.5],
                finetune: { steps: 60 }, eval: { max_samples: 128 },
            }),
        });
        const posted = await res.json();
        assert(res.status === 202, `POST /api/v1/jobs answered ${res.status}: ${JSON.stringify(posted)}`);
        await open(page, `#/jobs/${posted.id}`, 'h1[data-testid=job-title]');
        await page.evaluate(() => { window.__sameDocument = true; });
        const seen = new Set();
        const done = await pollFor(async () => {
            const s = await graph(page, 'heatmap');
            if (s.traces && s.traces[0] && Array.isArray(s.traces[0].z)) {
                seen.add(s.traces[0].z.flat().filter((v) => typeof v === 'number').length);
            }
            const j = await api(`/api/v1/jobs/${posted.id}`);
            return j.state === 'done' && gridFilled(s) ? { j, s } : null;
        }, async () => {
            const j = await api(`/api/v1/jobs/${posted.id}`);
            return `job ${posted.id} is ${j.state}; the heatmap's z is ${JSON.stringify((await graph(page, 'heatmap')).traces?.[0]?.z)}`;
        }, 60000);
        const cells = (await api(`/api/v1/jobs/${posted.id}/cells`)).cells;
        checkGrid(done.s, ablationGrid(done.j, cells, 'accuracy'), 'accuracy');
        await pollFor(async () => /\bdone\b/i.test(await page.textContent('div[data-testid=job-summary]')),
            async () => `summary still "${(await page.textContent('div[data-testid=job-summary]')).trim().slice(0, 120)}"`);
        const hash = await page.evaluate(() => location.hash);
        assert(hash === `#/jobs/${posted.id}`, `the page moved to ${hash}`);
        assert(await page.evaluate(() => window.__sameDocument === true), 'the page reloaded itself');
        return `values drawn: ${[...seen].sort().join(' -> ')} of ${cells.length}`;
    });

    // ---------------------------------------------------------- keyboard
    await checks.run('keyboard: Tab reaches the nav links and the form fields, with visible focus', async () => {
        // A fresh load, so that sequential focus starts at the top of the document.
        await open(page, '#/new', 'form[data-testid=new-job-form] button[type=submit]');
        await page.reload();
        await page.waitForSelector('form[data-testid=new-job-form] button[type=submit]');
        const seen = new Set();
        let moves = 0;
        let prev = null;
        let invisible = null;
        for (let i = 0; i < 80 && !seen.has('submit'); i++) {
            await page.keyboard.press('Tab');
            const a = await page.evaluate(() => {
                const e = document.activeElement;
                if (!e || e === document.body) return null;
                const s = getComputedStyle(e);
                const visible = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
                const key = e.matches('a[href^="#/"]') ? e.getAttribute('href')
                    : e.matches('button[type=submit]') && e.closest('form[data-testid=new-job-form]') ? 'submit'
                        : e.getAttribute('name') ? `${e.tagName.toLowerCase()}[name=${e.getAttribute('name')}]`
                            : e.getAttribute('data-testid') || e.tagName.toLowerCase();
                return { key, visible, id: `${key}|${[...document.querySelectorAll('*')].indexOf(e)}` };
            });
            if (!a) continue;
            if (a.id !== prev) moves++;
            prev = a.id;
            seen.add(a.key);
            if (!a.visible && !invisible && (a.key.startsWith('#/') || a.key.includes('[name='))) invisible = a.key;
        }
        const want = ['#/jobs', '#/models', '#/new', 'select[name=preset]', 'select[name=type]', 'select[name=model]', 'input[name=rates]', 'submit'];
        const missing = want.filter((k) => !seen.has(k));
        assert(missing.length === 0, `Tab never reached ${missing.join(', ')} (reached ${[...seen].join(', ')})`);
        assert(!invisible, `${invisible} has no visible focus indicator (outline none, no box-shadow)`);
        // Enter on a focused nav link follows it.
        await open(page, '#/jobs', 'table[data-testid=jobs-table]');
        await page.reload();
        await page.waitForSelector('table[data-testid=jobs-table]');
        for (let i = 0; i < 20; i++) {
            await page.keyboard.press('Tab');
            if (await page.evaluate(() => document.activeElement?.getAttribute('href') === '#/models')) break;
        }
        await page.keyboard.press('Enter');
        await page.waitForSelector('table[data-testid=models-table]').catch(() => { throw new Error('Enter on the Models link did not open the models page'); });
        return `${moves} focus moves`;
    });

    // ---------------------------------------------------------- screenshots, narrow screen
    const pages = [
        { name: 'jobs', hash: '#/jobs', ready: 'table[data-testid=jobs-table] tbody tr[data-job-id]' },
        { name: 'job-ablation', hash: `#/jobs/${ABL}`, ready: 'table[data-testid=cells-table] tbody tr', graph: 'heatmap' },
        { name: 'job-sensitivity', hash: `#/jobs/${SENS}`, ready: 'table[data-testid=cells-table] tbody tr', graph: 'sensitivity-chart' },
        { name: 'models', hash: '#/models', ready: 'table[data-testid=models-table] tbody tr' },
        { name: 'new', hash: '#/new', ready: 'form[data-testid=new-job-form]' },
    ];
    if (FAILED !== null) pages.push({ name: 'job-failed', hash: `#/jobs/${FAILED}`, ready: 'table[data-testid=cells-table] tbody tr' });
    for (const [label, size] of [['1280x800', DESKTOP], ['390x844', NARROW]]) {
        await checks.run(`screenshots at ${label}${size === NARROW ? ', nothing wider than the screen' : ''}`, async () => {
            await page.setViewportSize(size);
            const problems = [];
            for (const p of pages) {
                await open(page, p.hash, p.ready);
                if (p.graph) {
                    await pollFor(async () => {
                        const g = await graph(page, p.graph);
                        return g.traces && g.traces.length > 0;
                    }, async () => `${p.name}: no ${p.graph} graph`);
                    await sleep(300); // let Plotly finish its resize before the picture
                }
                const file = path.join(SHOTS, `${p.name}-${label}.png`);
                await page.screenshot({ path: file, fullPage: true });
                if (size === NARROW) {
                    const m = await page.evaluate((gid) => {
                        const g = gid ? document.querySelector(`[data-testid="${gid}"]`) : null;
                        return {
                            doc: document.documentElement.scrollWidth,
                            view: window.innerWidth,
                            graph: g ? Math.round(g.getBoundingClientRect().width) : 0,
                        };
                    }, p.graph || null);
                    if (m.doc > m.view + 1) problems.push(`${p.name}: the page is ${m.doc}px wide in a ${m.view}px window`);
                    if (m.graph > m.view) problems.push(`${p.name}: the ${p.graph} chart is ${m.graph}px wide`);
                }
            }
            assert(problems.length === 0, problems.join('; '));
            return `${pages.length} pages -> ${SHOTS}/*-${label}.png`;
        });
    }
    await page.setViewportSize(DESKTOP);

    await checks.run('no console errors or uncaught exceptions on any page', async () => {
        assert(pageErrors.length === 0, `${pageErrors.length}:\n    ${pageErrors.slice(0, 20).join('\n    ')}`);
    });

    await browser.close();
    console.log(`dashboard: ${checks.passed} passed, ${checks.failed.length} failed`);
    if (!checks.ok()) {
        console.log(`failed: ${checks.failed.map((f) => f.name).join('; ')}`);
        process.exit(1);
    }
}

main().catch((e) => {
    console.log(`FAIL - dashboard.mjs: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
});
