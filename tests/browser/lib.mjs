// tests/browser/lib.mjs — small helpers for the dashboard browser test (dashboard.mjs).
// A check runner that prints one line per check and keeps going after a failure, an API client
// for the expected values (Node's fetch, independent of the pages), number comparisons, and
// parsing of numbers as the pages show them ("0.758", "75.8%", "−0.24"). No browser code here.

// Runs named checks in order; each check is an async function that throws on failure and may
// return a short note. Failures are collected; ok() says whether every check passed.
export class Checks {
    constructor() {
        this.passed = 0;
        this.failed = [];
    }

    async run(name, fn) {
        try {
            const note = await fn();
            this.passed++;
            console.log(`ok   - ${name}${note ? ` (${note})` : ''}`);
            return true;
        } catch (e) {
            const msg = e && e.message ? e.message : String(e);
            this.failed.push({ name, msg });
            console.log(`FAIL - ${name}: ${msg}`);
            return false;
        }
    }

    ok() {
        return this.failed.length === 0;
    }
}

export function assert(cond, msg) {
    if (!cond) throw new Error(msg);
}

// GET a JSON document from the API (anonymous reads are allowed; the token is sent anyway).
export async function apiGet(base, token, path) {
    const res = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
    const text = await res.text();
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}: ${text.slice(0, 300)}`);
    return JSON.parse(text);
}

export function near(a, b, tol = 1e-9) {
    return typeof a === 'number' && typeof b === 'number' && Math.abs(a - b) <= tol;
}

// A number as a page shows it: optional sign (ASCII or U+2212), digits, optional "%" or "pp"
// (percentage points; both divided by 100). Returns {value, tol} where tol is half a unit of
// the last digit shown, or null when the text holds no number.
export function parseShown(text) {
    const t = String(text).replace(/\u2212/g, '-').replace(/,/g, '').trim();
    const m = t.match(/([-+]?)(\d+)(?:\.(\d+))?\s*(%|pp\b)?/);
    if (!m) return null;
    const decimals = m[3] ? m[3].length : 0;
    let value = Number(`${m[1] === '-' ? '-' : ''}${m[2]}.${m[3] || '0'}`);
    let tol = 0.5 * 10 ** -decimals;
    if (m[4]) {
        value /= 100;
        tol /= 100;
    }
    return { value, tol: tol + 1e-12 };
}

// Whether the numbers are ordered one way: 1 ascending, -1 descending (ties allowed).
export function ordered(values, dir) {
    for (let i = 1; i < values.length; i++) {
        if (dir > 0 ? values[i] < values[i - 1] : values[i] > values[i - 1]) return false;
    }
    return true;
}

// Whether `needle` appears in `hay` in order (not necessarily adjacent).
export function isSubsequence(needle, hay) {
    let i = 0;
    for (const h of hay) {
        if (i < needle.length && h === needle[i]) i++;
    }
    return i === needle.length;
}

// Matches each shown number to a distinct expected value within the shown precision.
// Returns null when every expected value is matched, else a description of what is missing.
export function matchShown(shownTexts, expected) {
    const shown = shownTexts.map(parseShown);
    if (shown.some((s) => s === null)) {
        return `non-numeric label among ${JSON.stringify(shownTexts)}`;
    }
    const used = new Array(shown.length).fill(false);
    for (const v of expected) {
        const k = shown.findIndex((s, i) => !used[i] && Math.abs(s.value - v) <= s.tol);
        if (k < 0) return `no label shows ${v} (labels ${JSON.stringify(shownTexts)})`;
        used[k] = true;
    }
    return null;
}

export function fmtList(values) {
    return `[${values.map((v) => (typeof v === 'number' ? +v.toFixed(6) : JSON.stringify(v))).join(', ')}]`;
}
