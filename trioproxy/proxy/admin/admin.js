// The admin page's script (admin.html); a file of its own for the page's CSP.
'use strict';
const KEY = 'trioproxy-admin-key';
const $ = (id) => document.getElementById(id);

function adminKey() {
  // #key=... lets a script open the page signed in; the fragment never leaves the browser.
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem(KEY);
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderInflight(requests) {
  const body = $('inflight');
  const seen = new Set();
  for (const r of requests) {
    seen.add(r.id);
    let row = body.querySelector(`tr[data-id="${CSS.escape(r.id)}"]`);
    if (!row) {
      row = body.insertRow();
      row.dataset.id = r.id;
      for (const v of [r.id, r.key || '-', r.model || '-', r.upstream || '-']) cell(row, v);
      row.cells[0].title = `x-request-id: ${r.request_id}`;
      for (let i = 0; i < 4; i++) cell(row, '', i ? 'num' : '');
      const button = document.createElement('button');
      button.textContent = 'Cancel';
      button.addEventListener('click', () => cancel(r.id, button));
      row.insertCell().append(button);
    }
    const c = row.cells;
    c[2].textContent = r.model || '-';
    c[3].textContent = r.upstream || '-';
    c[4].textContent = r.phase;
    c[5].textContent = r.age_s.toFixed(1);
    c[6].textContent = r.bytes;
    c[7].textContent = r.events;
  }
  for (const row of [...body.rows]) if (!seen.has(row.dataset.id)) row.remove();
  $('inflight-count').textContent = `(${requests.length})`;
}

function renderRecent(recent) {
  const body = $('recent');
  body.replaceChildren();
  const totals = {};
  for (const r of recent) {
    totals[r.outcome] = (totals[r.outcome] || 0) + 1;
    const row = body.insertRow();
    cell(row, r.ended_s_ago.toFixed(0), 'num');
    cell(row, r.id).title = `x-request-id: ${r.request_id}`;
    cell(row, r.outcome, `outcome-${r.outcome}`);
    cell(row, r.status, 'num');
    for (const v of [r.phase, r.key || '-', r.model || '-', r.upstream || '-']) cell(row, v);
    cell(row, r.age_s.toFixed(2), 'num');
    cell(row, r.events, 'num');
  }
  const t = $('totals');
  t.replaceChildren();
  for (const [outcome, n] of Object.entries(totals)) {
    const s = document.createElement('span');
    s.className = `outcome-${outcome}`;
    s.textContent = `${outcome}: ${n}`;
    t.append(s);
  }
  if (!recent.length) t.textContent = 'nothing ended in the last five minutes';
}

function label(le) {
  return le < 1 ? `${+(le * 1000).toFixed(1)} ms` : `${le} s`;
}

function renderChart(buckets) {
  // Cumulative Prometheus buckets to counts per bucket.
  const counts = buckets.map(([le, n], i) => [le, n - (i ? buckets[i - 1][1] : 0)]);
  const svg = $('chart');
  const ns = 'http://www.w3.org/2000/svg';
  svg.replaceChildren();
  const top = Math.max(1, ...counts.map(([, n]) => n));
  const w = 640 / Math.max(1, counts.length);
  counts.forEach(([le, n], i) => {
    const h = Math.round((n / top) * 120);
    const bar = document.createElementNS(ns, 'rect');
    Object.entries({ x: i * w + 4, y: 135 - h, width: w - 8, height: h }).forEach(([k, v]) => bar.setAttribute(k, v));
    const title = document.createElementNS(ns, 'title');
    const name = le === null ? 'slower' : `≤ ${label(le)}`;
    title.textContent = `${name}: ${n}`;
    bar.append(title);
    for (const [text, y] of [[String(n), 130 - h], [name, 155]]) {
      const t = document.createElementNS(ns, 'text');
      t.setAttribute('x', i * w + 4);
      t.setAttribute('y', y);
      t.textContent = text;
      svg.append(t);
    }
    svg.append(bar);
  });
}

function render(snap) {
  renderInflight(snap.requests);
  renderRecent(snap.recent);
  renderChart(snap.stop_propagation);
  // A worker whose listing did not come, and requests past a worker's listing
  // bound, are said, never silently missing.
  const missing = (snap.unanswered || []).length;
  const unlisted = snap.unlisted || 0;
  $('workers').textContent = `${snap.workers} worker${snap.workers === 1 ? '' : 's'}` +
    (missing ? `, ${missing} not answering` : '') +
    (unlisted ? `, ${unlisted} more in flight not listed` : '');
}

async function cancel(id, button) {
  button.disabled = true;
  button.textContent = 'Cancelling';
  const answer = await fetch(`/admin/requests/${encodeURIComponent(id)}`, {
    method: 'DELETE', headers: { authorization: `Bearer ${adminKey()}` },
  });
  $('message').textContent = answer.ok ? `cancelled ${id}` : `${id}: ${(await answer.json()).error.message}`;
}

function showLogin() {
  $('login').hidden = false;
  $('status').className = 'down';
  $('status').textContent = 'admin key needed';
}

async function follow() {
  const key = adminKey();
  if (!key) return showLogin();
  const answer = await fetch('/admin/events', { headers: { authorization: `Bearer ${key}` } });
  if (answer.status === 401) {
    sessionStorage.removeItem(KEY);
    return showLogin();
  }
  $('login').hidden = true;
  $('status').className = 'live';
  $('status').textContent = 'live';
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (event.startsWith('data: ')) render(JSON.parse(event.slice(6)));
    }
  }
}

async function run() {
  for (;;) {
    try {
      await follow();
      if (!$('login').hidden) return;
    } catch (err) {
      $('message').textContent = String(err);
    }
    $('status').className = 'down';
    $('status').textContent = 'reconnecting';
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $('key').value);
  run();
});
run();
