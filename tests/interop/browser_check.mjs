// Drives a real headless Chromium (Debian's `chromium`, through
// puppeteer-core and the DevTools protocol; nothing is downloaded) against
// sse-edge, for tests/browser.rs.
//
// Usage: node browser_check.mjs PLAN_JSON
//
// PLAN_JSON is {"chromium": PATH, "mode": "cors" | "demo", ...}:
// - cors: {"page", "denied_page", "relay", "forwarder", "key"}: pages on two
//   loopback origins (the relay allows the first), the relay, a forwarder
//   in front of it that cuts its first connection, a client key. Runs each
//   scenario in the page's own origin and reports what the script could
//   see.
// - demo: {"url", "screenshot", "cut_after_tokens"}: the `sse-edge demo`
//   page: sends, cuts the connection after some tokens, waits for the end,
//   takes a screenshot and measures it.
//
// Prints one JSON line with what happened. Nothing here asserts:
// tests/browser.rs owns the verdict.

import { writeFileSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

const plan = JSON.parse(process.argv[2] ?? '{}');
if (!plan.chromium || !plan.mode) {
  process.stderr.write('usage: node browser_check.mjs \'{"chromium":PATH,"mode":"cors"|"demo",...}\'\n');
  process.exit(2);
}

const browser = await puppeteer.launch({
  executablePath: plan.chromium,
  headless: true,
  // Root in CI: Chromium's sandbox needs a user namespace it may not have.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
         '--no-default-browser-check', '--disable-extensions', '--mute-audio'],
});
const watchdog = setTimeout(() => { process.stderr.write('browser_check: 90 s passed\n'); process.exit(3); }, 90_000);
try {
  const out = plan.mode === 'cors' ? await cors(plan) : await demo(plan);
  out.chromium = await browser.version();
  process.stdout.write(JSON.stringify(out) + '\n');
} finally {
  clearTimeout(watchdog);
  await browser.close();
}

async function pageAt(url) {
  const page = await browser.newPage();
  const console_ = [];
  page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));
  await page.goto(url);
  return { page, console: console_ };
}

// ------------------------------------------------------------------ cors

async function cors(plan) {
  const { page, console: logged } = await pageAt(plan.page);
  const out = {};
  out.origin = await page.evaluate(() => location.origin);
  const auth = { authorization: `Bearer ${plan.key}`, 'content-type': 'application/json' };
  const chat = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });

  // A streaming POST through a 5 s silent upstream, read as it arrives.
  out.slow = await page.evaluate(async (relay, headers, body) => {
    const t0 = performance.now();
    const res = await fetch(`${relay}/app/slow/v1/chat/completions`, { method: 'POST', headers, body });
    const head = {
      ms: performance.now() - t0, status: res.status,
      early_commit: res.headers.get('sse-edge-early-commit'),
      stream_id: res.headers.get('sse-edge-stream-id'),
      content_type: res.headers.get('content-type'),
    };
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const chunks = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push({ ms: performance.now() - t0, text: decoder.decode(value, { stream: true }) });
    }
    return { head, chunks };
  }, plan.relay, auth, chat);

  // Relay-made errors: status, JSON body and the exposed headers.
  out.errors = await page.evaluate(async (relay, key) => {
    const read = async (res) => ({
      status: res.status,
      body: await res.json(),
      sse_edge_error: res.headers.get('sse-edge-error'),
      retry_after: res.headers.get('retry-after'),
    });
    const post = (path, headers) => fetch(`${relay}${path}`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"model":"m"}' });
    const first = await post('/limited/v1/chat/completions', {});
    return {
      limited_first: first.status,
      limited: await read(await post('/limited/v1/chat/completions', {})),
      down: await read(await post('/down/v1/chat/completions', {})),
      unauthorized: await read(await post('/app/v1/chat/completions', { authorization: 'Bearer wrong' })),
      authorized: (await post('/app/v1/chat/completions', { authorization: `Bearer ${key}` })).status,
    };
  }, plan.relay, plan.key);

  // An EventSource on the resume endpoint, through the forwarder that
  // cuts its first connection: the token comes from a fetch's
  // sse-edge-stream-id, then the EventSource reconnects by itself.
  out.resume = await page.evaluate(async (relay, forwarder, headers, body) => {
    const ctl = new AbortController();
    const res = await fetch(`${relay}/stream/gated/v1/chat/completions`, { method: 'POST', headers, body, signal: ctl.signal });
    const token = res.headers.get('sse-edge-stream-id');
    ctl.abort();
    if (!token) return { token, end: 'no_token' };
    return await new Promise((resolve) => {
      const data = [], ids = [], errors = [];
      const es = new EventSource(`${forwarder}/sse-edge/streams/${token}`);
      const done = (end) => { es.close(); clearTimeout(timer); resolve({ token, data, ids, errors, end }); };
      const timer = setTimeout(() => done('timeout'), 30_000);
      es.onmessage = (e) => {
        data.push(e.data); ids.push(e.lastEventId);
        if (e.data === '[DONE]') done('done');
      };
      es.onerror = () => {
        errors.push(es.readyState);
        if (es.readyState === EventSource.CLOSED) done('closed');
      };
    });
  }, plan.relay, plan.forwarder, { 'content-type': 'application/json' }, chat);
  out.console = logged;

  // Another origin: the preflighted POST and a simple GET are both
  // blocked by the browser (fetch rejects; the script sees no answer).
  const other = await pageAt(plan.denied_page);
  out.denied = await other.page.evaluate(async (relay, headers, body) => {
    const attempt = async (url, init) => {
      try { const r = await fetch(url, init); return `answered ${r.status}`; } catch (e) { return `blocked: ${e.name}`; }
    };
    return {
      origin: location.origin,
      post: await attempt(`${relay}/app/v1/chat/completions`, { method: 'POST', headers, body }),
      get: await attempt(`${relay}/open/v1/models`, {}),
    };
  }, plan.relay, auth, chat);
  out.denied.console = other.console;
  return out;
}

// ------------------------------------------------------------------ demo

async function demo(plan) {
  const { page, console: logged } = await pageAt(plan.url);
  await page.setViewport({ width: 1280, height: 800 });
  const text = (id) => page.$eval(`#${id}`, (e) => e.textContent);
  const num = async (id) => Number(await text(id));
  await page.click('#send');
  await page.waitForFunction(() => Number(document.getElementById('keepalives').textContent) >= 1,
                             { timeout: 20_000, polling: 'mutation' });
  await page.waitForFunction((n) => Number(document.getElementById('tokens').textContent) >= n,
                             { timeout: 20_000, polling: 'mutation' }, plan.cut_after_tokens);
  const before_cut = await text('answer');
  await page.click('#cut');
  const state_after_cut = await page.evaluate(() => document.body.dataset.state);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), { timeout: 30_000 });
  const shot = await page.screenshot({ type: 'png' });
  writeFileSync(plan.screenshot, shot);
  const out = {
    state: await page.evaluate(() => document.body.dataset.state),
    state_after_cut,
    before_cut,
    answer: await text('answer'),
    verdict: await text('verdict'),
    usage: await text('usage'),
    counts: {
      keepalives: await num('keepalives'), events: await num('events'), tokens: await num('tokens'),
      cuts: await num('cuts'), resumes: await num('resumes'),
    },
    log: await page.$$eval('#log li', (items) => items.map((li) => li.textContent)),
    console: logged,
    screenshot: await measure(shot),
  };
  return out;
}

// Decodes the PNG in a blank page and measures it: size, distinct colours
// (quantised), and the share of pixels that differ from the most common
// one (the background).
async function measure(png) {
  const blank = await browser.newPage();
  const stats = await blank.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.width; canvas.height = img.height;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, img.width, img.height).data;
    const counts = new Map();
    for (let i = 0; i < px.length; i += 4) {
      const key = ((px[i] >> 3) << 10) | ((px[i + 1] >> 3) << 5) | (px[i + 2] >> 3);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const total = px.length / 4;
    const background = Math.max(...counts.values());
    return { width: img.width, height: img.height, distinct_colors: counts.size,
             non_background: (total - background) / total };
  }, Buffer.from(png).toString('base64'));
  await blank.close();
  return { bytes: png.length, ...stats };
}
