// Drives a real JavaScript client stack through trioproxy, for tests/clients/.
// Usage: node client.mjs SCENARIO '{"base": ..., "simId": ..., ...}'
// Prints JSON lines: {"stopped_at": s} (CLOCK_MONOTONIC seconds, the clock of
// Python's time.monotonic()) when it stops, and {"text": ...} with what it got.
import OpenAI from 'openai';
import { streamText } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { chromium } from 'playwright-core';

const [scenario, rawConfig] = process.argv.slice(2);
const cfg = JSON.parse(rawConfig);
const simHeaders = {
  'x-sim-id': cfg.simId,
  'x-sim-tokens': String(cfg.tokens ?? 16),
  'x-sim-interval': String(cfg.interval ?? 0.01),
};
const messages = [{ role: 'user', content: 'hello' }];
const now = () => Number(process.hrtime.bigint()) / 1e9;
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function openaiStream({ stopBy }) {
  const client = new OpenAI({ baseURL: `${cfg.base}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'sim-small', messages, stream: true },
    { signal: controller.signal, headers: simHeaders },
  );
  let text = '';
  let chunks = 0;
  try {
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      chunks += 1;
      if (stopBy && chunks >= cfg.stopAfter) {
        emit({ stopped_at: now() });
        if (stopBy === 'abort') controller.abort();
        else break; // the SDK aborts its request when the loop is left
      }
    }
  } catch (err) {
    if (!(err instanceof OpenAI.APIUserAbortError)) throw err;
  }
  emit({ text });
}

async function aiSdkStream({ stop }) {
  const provider = createOpenAICompatible({
    name: 'trioproxy', baseURL: `${cfg.base}/v1`, apiKey: 'sk-test', headers: simHeaders,
  });
  const controller = new AbortController();
  const result = streamText({
    model: provider.chatModel('sim-small'), prompt: 'hello', abortSignal: controller.signal,
    maxRetries: 0, onError: () => {},
  });
  let text = '';
  let parts = 0;
  try {
    for await (const delta of result.textStream) {
      text += delta;
      parts += 1;
      if (stop && parts >= cfg.stopAfter) {
        emit({ stopped_at: now() });
        controller.abort();
      }
    }
  } catch (err) {
    if (err?.name !== 'AbortError') throw err;
  }
  emit({ text });
}

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--ignore-certificate-errors',
];

async function withPage(body) {
  const browser = await chromium.launch({
    executablePath: cfg.chromium ?? '/usr/bin/chromium', args: CHROMIUM_ARGS,
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    // The page is served on the proxy's own origin by Playwright, so its
    // fetches are same-origin: no CORS involved.
    await page.route(`${cfg.base}/page.html`, (route) => route.fulfill({
      contentType: 'text/html', body: '<!doctype html><title>chat</title><p>chat</p>',
    }));
    await page.goto(`${cfg.base}/page.html`);
    await body(page);
  } finally {
    await browser.close();
  }
}

// In the page: a chat UI's stream with a stop button, as SillyTavern and the
// Cherry Studio renderer do it.
const PAGE_STREAM = `(name, headers, tokens) => {
  window.streams = window.streams || {};
  const s = window.streams[name] = { controller: new AbortController(), chunks: 0, text: '', done: false };
  fetch('/v1/chat/completions', {
    method: 'POST', signal: s.controller.signal,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'sim-small', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  }).then(async (response) => {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      s.text += decoder.decode(value, { stream: true });
      s.chunks = s.text.split('data: ').length - 1;
    }
    s.done = true;
  }).catch((err) => { s.error = String(err); s.done = true; });
}`;

async function browserFetch({ stop }) {
  await withPage(async (page) => {
    await page.evaluate(`(${PAGE_STREAM})('main', ${JSON.stringify(simHeaders)})`);
    if (stop) {
      await page.waitForFunction((n) => window.streams.main.chunks >= n, cfg.stopAfter);
      emit({ stopped_at: now() });
      await page.evaluate(() => window.streams.main.controller.abort('Clicked stop button'));
    }
    await page.waitForFunction(() => window.streams.main.done);
    const s = await page.evaluate(() => window.streams.main);
    emit({ text: s.text, error: s.error ?? null });
  });
}

async function browserEventSource({ stop }) {
  await withPage(async (page) => {
    const query = new URLSearchParams({
      stream: 'true', 'sim-id': cfg.simId, 'sim-tokens': simHeaders['x-sim-tokens'],
      'sim-interval': simHeaders['x-sim-interval'],
    });
    await page.evaluate((url) => {
      const s = window.es = { data: [], done: false };
      s.source = new EventSource(url);
      s.source.onmessage = (event) => {
        s.data.push(event.data);
        if (event.data === '[DONE]') { s.source.close(); s.done = true; }
      };
    }, `/v1/chat/completions?${query}`);
    if (stop) {
      await page.waitForFunction((n) => window.es.data.length >= n, cfg.stopAfter);
      emit({ stopped_at: now() });
      await page.evaluate(() => { window.es.source.close(); window.es.done = true; });
    }
    await page.waitForFunction(() => window.es.done);
    emit({ text: (await page.evaluate(() => window.es.data)).join('\n') });
  });
}

// Over TLS Chromium speaks HTTP/2: stop one stream while a sibling on the
// same connection streams on, and report the protocol it used.
async function browserH2Sibling() {
  await withPage(async (page) => {
    const sibling = { ...simHeaders, 'x-sim-id': cfg.siblingId, 'x-sim-tokens': String(cfg.siblingTokens) };
    await page.evaluate(`(${PAGE_STREAM})('doomed', ${JSON.stringify(simHeaders)})`);
    await page.evaluate(`(${PAGE_STREAM})('sibling', ${JSON.stringify(sibling)})`);
    await page.waitForFunction((n) => window.streams.doomed.chunks >= n, cfg.stopAfter);
    emit({ stopped_at: now() });
    await page.evaluate(() => window.streams.doomed.controller.abort('Clicked stop button'));
    await page.waitForFunction(() => window.streams.sibling.done);
    const result = await page.evaluate(() => ({
      text: window.streams.sibling.text,
      error: window.streams.sibling.error ?? null,
      protocols: performance.getEntriesByType('resource').map((e) => e.nextHopProtocol),
    }));
    emit(result);
  });
}

// The proxy's own admin page, as an operator uses it: sign in through the URL
// fragment, see every stream in flight (from every worker), press Cancel on each.
async function adminPageCancel() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium ?? '/usr/bin/chromium', args: CHROMIUM_ARGS,
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${cfg.base}/admin/#key=${encodeURIComponent(cfg.adminKey)}`);
    await page.waitForFunction((n) => document.querySelectorAll('#inflight tr').length >= n, cfg.count);
    const shown = await page.$$eval('#inflight tr', (rows) => rows.map((r) => ({
      id: r.dataset.id, cells: [...r.cells].map((c) => c.textContent),
    })));
    const workers = await page.textContent('#workers');
    const keyInUrl = page.url().includes(cfg.adminKey);
    emit({ stopped_at: now() });
    for (const row of shown) {
      await page.click(`#inflight tr[data-id="${row.id}"] button`);
    }
    await page.waitForFunction(() => document.querySelectorAll('#inflight tr').length === 0);
    // The next snapshots: the ended requests, and the stop-propagation chart.
    await page.waitForFunction(
      (n) => document.querySelectorAll('#recent tr').length >= n && document.querySelectorAll('#chart rect').length > 0,
      shown.length,
    );
    const recent = await page.$$eval('#recent tr', (rows) => rows.map((r) => r.cells[2].textContent));
    const bars = await page.$$eval('#chart rect', (rects) => rects.map((r) => r.querySelector('title').textContent));
    const totals = await page.textContent('#totals');
    emit({ shown, workers, keyInUrl, recent, bars, totals });
  } finally {
    await browser.close();
  }
}

// A conformance report written with --html, opened as a file with no network.
async function reportPage() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium ?? '/usr/bin/chromium', args: CHROMIUM_ARGS,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    const requested = [];
    page.on('request', (request) => requested.push(request.url()));
    await page.goto(`file://${cfg.file}`);
    const rows = await page.$$eval('tbody tr', (trs) => trs.map((tr) => ({
      name: tr.cells[0].firstChild.textContent, grade: tr.querySelector('.grade').textContent,
      dots: tr.querySelectorAll('circle.dot').length, never: tr.querySelectorAll('circle.never').length,
    })));
    const verdict = await page.textContent('.verdict');
    await page.screenshot({ path: cfg.screenshot, fullPage: true });
    emit({ rows, verdict, requested });
  } finally {
    await browser.close();
  }
}

const SCENARIOS = {
  'openai-whole': () => openaiStream({}),
  'openai-abort': () => openaiStream({ stopBy: 'abort' }),
  'openai-break': () => openaiStream({ stopBy: 'break' }),
  'aisdk-whole': () => aiSdkStream({ stop: false }),
  'aisdk-abort': () => aiSdkStream({ stop: true }),
  'browser-fetch-whole': () => browserFetch({ stop: false }),
  'browser-fetch-abort': () => browserFetch({ stop: true }),
  'browser-eventsource-whole': () => browserEventSource({ stop: false }),
  'browser-eventsource-close': () => browserEventSource({ stop: true }),
  'browser-h2-sibling': () => browserH2Sibling(),
  'admin-page-cancel': () => adminPageCancel(),
  'report-page': () => reportPage(),
};

await SCENARIOS[scenario]();
