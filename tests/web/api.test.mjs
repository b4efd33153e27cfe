// api.test.mjs — unit tests of apiAll (web/js/api.js), the walk through a paged listing, with a
// fake request function standing in for the server (node:test, no browser, no network).
// Run: node --test tests/web/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { apiAll } from '../../web/js/api.js';

// A server of n cells answering pages like GET /api/v1/jobs/{id}/cells (token = last idx).
function fakeServer(n) {
  const calls = [];
  async function get(path, opts) {
    calls.push({ path, opts });
    const u = new URL(path, 'http://x');
    const limit = Number(u.searchParams.get('limit'));
    const tok = u.searchParams.get('page_token');
    const start = tok === null ? 0 : Number(tok.slice(1)) + 1;
    const cells = [];
    for (let i = start; i < Math.min(n, start + limit); i++) cells.push({ idx: i });
    const more = start + limit < n;
    return { job: 1, cells, next_page_token: more ? `c${start + limit - 1}` : null };
  }
  return { get, calls };
}

test('apiAll returns every item of every page in order', async () => {
  for (const [n, limit, pages] of [[0, 3, 1], [1, 3, 1], [3, 3, 1], [4, 3, 2], [10, 3, 4], [2500, 1000, 3]]) {
    const s = fakeServer(n);
    const items = await apiAll('/api/v1/jobs/1/cells', 'cells', { limit }, s.get);
    assert.deepEqual(items.map((c) => c.idx), [...Array(n).keys()], `n=${n} limit=${limit}`);
    assert.equal(s.calls.length, pages, `n=${n} limit=${limit}`);
  }
});

test('apiAll asks for the maximum page by default, passes the token and keeps the query', async () => {
  const s = fakeServer(1500);
  const signal = new AbortController().signal;
  await apiAll('/api/v1/jobs/1/cells?state=done', 'cells', { signal }, s.get);
  assert.equal(s.calls[0].path, '/api/v1/jobs/1/cells?state=done&limit=1000');
  assert.equal(s.calls[1].path, '/api/v1/jobs/1/cells?state=done&limit=1000&page_token=c999');
  assert.equal(s.calls[0].opts.signal, signal);
  assert.equal('limit' in s.calls[0].opts, false);
});

test('apiAll stops at maxPages and passes errors on', async () => {
  const endless = async () => ({ cells: [{ idx: 0 }], next_page_token: 'c0' });
  await assert.rejects(apiAll('/x', 'cells', { maxPages: 5 }, endless), /more than 5 pages/);
  const failing = async () => { throw Object.assign(new Error('bad'), { status: 400 }); };
  await assert.rejects(apiAll('/x', 'cells', {}, failing), /bad/);
});
