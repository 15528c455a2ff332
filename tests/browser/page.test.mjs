// Browser tests of the web page at `/`, against a running anb-web.
// Playwright (playwright-core) drives Debian's Chromium; node:test runs them.
//
//   ANB_BASE_URL=http://127.0.0.1:8080   the server (required)
//   ANB_MAIL_DIR                         where the server's file mailer writes each message as an
//                                        .eml (its ANB_DATA_DIR + /mail); required by the tests that
//                                        vote or verify (they fail without it). The server should run
//                                        with ANB_VOTE_REQUIRES_VERIFIED_EMAIL=true.
//   ANB_CLIP_1080P, ANB_CLIP_SHORT       MP4 files: 20–60 s at 1080p, and under 20 s
//                                        (made with ffmpeg in a temporary folder when unset)
//   ANB_SCREENSHOTS                      a folder for screenshots of every view (optional)
//   ANB_CHROMIUM                         the browser (default /usr/bin/chromium)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const BASE = (process.env.ANB_BASE_URL || '').replace(/\/+$/, '');
if (!BASE) throw new Error('ANB_BASE_URL is required, e.g. ANB_BASE_URL=http://127.0.0.1:8080');
const SHOTS = process.env.ANB_SCREENSHOTS || '';
const MAIL_DIR = process.env.ANB_MAIL_DIR || '';
const CHROMIUM = process.env.ANB_CHROMIUM || '/usr/bin/chromium';
const PROCESSING_TIMEOUT = 240_000; // a debug build on two cores takes up to about a minute per clip
const PHONE = { width: 390, height: 844 };
const LAPTOP = { width: 1280, height: 800 };
const SMALL = { width: 360, height: 740 };
const PASSWORD = 'S3cure!pass';

let browser;
let work;
let clip1080;
let clipShort;
let junk;
/** A processed video made by scenario 1, reused by the others when there. */
let shared = null;

const unique = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

function makeClip(file, seconds) {
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30',
    '-t', String(seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', file]);
  return file;
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'anb-browser-'));
  clip1080 = process.env.ANB_CLIP_1080P || makeClip(path.join(work, 'clip-1080p.mp4'), 22);
  clipShort = process.env.ANB_CLIP_SHORT || makeClip(path.join(work, 'clip-short.mp4'), 5);
  junk = path.join(work, 'no-es-video.mp4');
  writeFileSync(junk, randomBytes(256 * 1024));
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

/** A fresh browser context (its own sessionStorage) and page; page errors fail the test. */
async function openPage(t, viewport = LAPTOP) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'es-CO' });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  t.after(async () => {
    await context.close();
    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  });
  return page;
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

function newUser(tag, city) {
  const id = unique();
  return {
    first_name: 'Jugador', last_name: `${tag} ${id.slice(-4)}`,
    email: `${tag}-${id}@example.com`, password: PASSWORD,
    city: city || `Ciudad ${id}`, country: 'Colombia',
  };
}
const username = (user) => `${user.first_name} ${user.last_name}`;

async function signUpInPage(page, user) {
  await page.goto(`${BASE}/#/cuenta`);
  const form = page.locator('#signup-form');
  await form.getByLabel('Nombre').fill(user.first_name);
  await form.getByLabel('Apellido').fill(user.last_name);
  await form.getByLabel('Correo electrónico').fill(user.email);
  await form.getByLabel('Contraseña', { exact: true }).fill(user.password);
  await form.getByLabel('Repite la contraseña').fill(user.password);
  await form.getByLabel('Ciudad').fill(user.city);
  await form.getByLabel('País').fill(user.country);
  await form.getByRole('button', { name: 'Crear cuenta' }).click();
  await page.getByRole('button', { name: 'Cerrar sesión' }).first().waitFor();
}

async function logInInPage(page, user) {
  if (!page.url().includes('#/cuenta')) await page.getByRole('link', { name: 'Entrar', exact: true }).click();
  const form = page.locator('#login-form');
  await form.getByLabel('Correo electrónico').fill(user.email);
  await form.getByLabel('Contraseña').fill(user.password);
  await form.getByRole('button', { name: 'Entrar' }).click();
  await page.locator('header').getByRole('button', { name: 'Cerrar sesión' }).waitFor();
}

async function apiJson(method, route, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined && !(body instanceof FormData)) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${BASE}${route}`, {
    method, headers, body: body === undefined || body instanceof FormData ? body : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return json;
}

// ------------------------------------------------------------------ mail

/** The folder of the server's messages; a test that reads them fails (never skips) without it. */
function mailDir() {
  if (!MAIL_DIR) {
    throw new Error('ANB_MAIL_DIR is required by this test: the folder where the server (ANB_MAIL=file) writes '
      + 'each message as an .eml, i.e. its ANB_DATA_DIR + /mail (tests/browser/run.sh sets it)');
  }
  return MAIL_DIR;
}

/** A quoted-printable body as text: soft line breaks joined, =XX bytes decoded as UTF-8. */
function decodeQuotedPrintable(text) {
  const joined = text.replace(/=\r?\n/g, '');
  const bytes = [];
  for (let i = 0; i < joined.length; i += 1) {
    const hex = joined.slice(i + 1, i + 3);
    if (joined[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(joined[i], 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** An RFC 5322 message: its headers (unfolded, names in lower case) and its decoded body. */
function parseMessage(raw) {
  const end = raw.search(/\r?\n\r?\n/);
  const head = (end < 0 ? raw : raw.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  let body = end < 0 ? '' : raw.slice(end).replace(/^\r?\n\r?\n/, '');
  const headers = {};
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const encoding = (headers['content-transfer-encoding'] || '').toLowerCase();
  if (encoding === 'quoted-printable') body = decodeQuotedPrintable(body);
  else if (encoding === 'base64') body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  return { headers, body };
}

/** The messages to an address, oldest first. */
function messagesTo(email) {
  const dir = mailDir();
  let names;
  try {
    names = readdirSync(dir);
  } catch (error) {
    if (error.code === 'ENOENT') return []; // nothing sent yet
    throw error;
  }
  // `To: ana@example.com` or `To: Name <ana@example.com>`, this address alone.
  const escaped = email.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const want = new RegExp(`(^|[<\\s,])${escaped}($|[>\\s,])`);
  return names.filter((name) => name.endsWith('.eml'))
    .map((name) => {
      const file = path.join(dir, name);
      return { name, time: statSync(file).mtimeMs, ...parseMessage(readFileSync(file, 'utf8')) };
    })
    .filter((message) => want.test((message.headers.to || '').toLowerCase()))
    .sort((a, b) => a.time - b.time || a.name.localeCompare(b.name));
}

/** The token of the verification link in the newest message to an address, once `count` messages came. */
async function verificationToken(email, { count = 1, timeout = 30_000 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const messages = messagesTo(email);
    if (messages.length >= count) {
      const newest = messages.at(-1);
      const link = newest.body.match(/\/#\/verificar\?token=([0-9a-f]{64})\b/);
      assert.ok(link, `a verification link in ${newest.name}:\n${newest.body}`);
      return link[1];
    }
    assert.ok(Date.now() < deadline, `${count} message(s) to ${email} in ${MAIL_DIR} within ${timeout / 1000} s (found ${messages.length})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Verifies a person's address with the link of their newest message, through the API. */
async function verifyByApi(email) {
  const token = await verificationToken(email);
  const answer = await apiJson('POST', '/api/auth/verify-email', { body: { token } });
  assert.equal(answer.message, 'Correo verificado.');
}

/** Verifies the address unless it already is (a user made by another test). */
async function ensureVerified(user) {
  const { access_token: token } = await apiJson('POST', '/api/auth/login', { body: { email: user.email, password: user.password } });
  const me = await apiJson('GET', '/api/auth/me', { token });
  if (!me.email_verified) await verifyByApi(user.email);
}

async function signUpByApi(user) {
  await apiJson('POST', '/api/auth/signup', {
    body: { ...user, password1: user.password, password2: user.password, password: undefined },
  });
}

/** A player with a processed video, made through the API (when scenario 1 did not leave one). */
async function processedVideo() {
  if (shared) return shared;
  const player = newUser('fixture');
  await signUpByApi(player);
  const { access_token: token } = await apiJson('POST', '/api/auth/login', { body: { email: player.email, password: player.password } });
  const form = new FormData();
  form.append('title', `Jugada de prueba ${unique()}`);
  form.append('video_file', new Blob([readFileSync(clip1080)], { type: 'video/mp4' }), 'clip.mp4');
  await apiJson('POST', '/api/videos/upload', { token, body: form });
  const deadline = Date.now() + PROCESSING_TIMEOUT;
  for (;;) {
    const [video] = await apiJson('GET', '/api/videos', { token });
    if (video.status === 'processed') {
      shared = { player, videoId: video.video_id, title: video.title };
      return shared;
    }
    assert.notEqual(video.status, 'failed', 'the fixture video was processed');
    assert.ok(Date.now() < deadline, 'the fixture video was processed in time');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Whether the server offers the event stream of a video (else the page polls). */
async function serverHasEvents(token, videoId) {
  const controller = new AbortController();
  try {
    const response = await fetch(`${BASE}/api/videos/${videoId}/events`, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' }, signal: controller.signal,
    });
    return response.ok && (response.headers.get('content-type') || '').includes('text/event-stream');
  } finally {
    controller.abort();
  }
}

/** Records what the page shows on a progress bar or card over time. */
async function recordProgress(page, selector) {
  await page.evaluate((sel) => {
    window.__record = { values: [], statuses: [], indeterminate: false, transports: [] };
    const rec = window.__record;
    const scan = () => {
      for (const el of document.querySelectorAll(sel)) {
        const card = el.closest('.my-card');
        if (card && rec.statuses.at(-1) !== card.dataset.status) rec.statuses.push(card.dataset.status);
        if (card?.dataset.transport && rec.transports.at(-1) !== card.dataset.transport) rec.transports.push(card.dataset.transport);
        const bar = el.matches('.progress') ? el : el.querySelector('.progress');
        if (!bar || bar.closest('[hidden]')) continue;
        if (bar.classList.contains('is-indeterminate')) rec.indeterminate = true;
        const value = bar.getAttribute('aria-valuenow');
        if (value !== null && rec.values.at(-1) !== Number(value)) rec.values.push(Number(value));
      }
    };
    new MutationObserver(scan).observe(document.body, { subtree: true, childList: true, attributes: true });
    scan();
  }, selector);
}

async function waitForVideoPlaying(page, video) {
  await video.scrollIntoViewIfNeeded();
  await page.waitForFunction((el) => el.readyState >= 1, await video.elementHandle(), { timeout: 30_000 });
  await video.evaluate((el) => { el.muted = true; return el.play(); });
  await page.waitForFunction((el) => el.readyState >= 2 && el.currentTime > 0.3, await video.elementHandle(), { timeout: 30_000 });
  const state = await video.evaluate((el) => ({ readyState: el.readyState, currentTime: el.currentTime, width: el.videoWidth, height: el.videoHeight }));
  assert.ok(state.readyState >= 2, `video has data (readyState ${state.readyState})`);
  assert.ok(state.currentTime > 0.3, `video plays (currentTime ${state.currentTime})`);
  assert.deepEqual([state.width, state.height], [1280, 720], 'the processed video is 1280x720');
}

/** What an accessibility reviewer would flag at a glance: unlabelled controls, text under WCAG AA contrast. */
async function audit(page) {
  return page.evaluate(() => {
    const problems = [];
    for (const input of document.querySelectorAll('input, select, textarea')) {
      if (input.type !== 'hidden' && input.labels.length === 0 && !input.getAttribute('aria-label')) problems.push(`input without label: ${input.id || input.name}`);
    }
    for (const button of document.querySelectorAll('button, a[href]')) {
      if (button.checkVisibility() && !(button.textContent.trim() || button.getAttribute('aria-label'))) problems.push(`control without a name: ${button.outerHTML.slice(0, 60)}`);
    }
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const channel = (v) => { const x = v / 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
    const lum = ({ r, g, b }) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.5) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    for (const el of document.querySelectorAll('body *')) {
      if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true }) || el.closest(':disabled')) continue;
      if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      const box = el.getBoundingClientRect();
      if (box.width < 2 || box.height < 2) continue; // visually hidden text
      const style = getComputedStyle(el);
      const fg = parse(style.color);
      const [l1, l2] = [lum(fg), lum(background(el))];
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)}: ${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 40)}"`);
    }
    return problems;
  });
}

// ------------------------------------------------------------------ scenarios

test('1. a player signs up, logs in, uploads a 1080p clip, follows its processing and plays it', { timeout: 600_000 }, async (t) => {
  const page = await openPage(t);
  const player = newUser('jugador');
  await signUpInPage(page, player);
  assert.equal(await page.locator('#session-user').textContent(), player.email);

  // log out and in again
  await page.locator('header').getByRole('button', { name: 'Cerrar sesión' }).click();
  await page.getByRole('link', { name: 'Entrar', exact: true }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('anb.token')), null, 'log-out forgets the token');
  await logInInPage(page, player);
  assert.ok(await page.evaluate(() => sessionStorage.getItem('anb.token')), 'the token is kept in sessionStorage');

  await page.getByRole('link', { name: 'Mis videos' }).click();
  const form = page.locator('#upload-form');
  // the rules are shown before a file is chosen
  const rules = await form.locator('#upload-rules').innerText();
  for (const rule of ['100 MB', '20 y 60 segundos', '1080', 'MP4 o MOV', 'H.264 o HEVC']) {
    assert.ok(rules.includes(rule), `rules mention ${rule}: ${rules}`);
  }
  await shot(page, 'my-videos-empty-laptop');

  const title = `Mi mejor tiro <b>${unique()}</b>`; // markup in a title stays text
  await form.getByLabel('Título').fill(title);
  await form.getByLabel('Archivo de video').setInputFiles(clip1080);
  await form.locator('#upload-file-check').getByText('Cumple las reglas').waitFor();
  assert.match(await form.locator('#upload-file-check').innerText(), /22\.0 s · 1920×1080/);

  await recordProgress(page, '#upload-progress');
  // slow the transfer down a little so its progress is seen on a fast loopback
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 40 * 1024 * 1024 });
  await form.getByRole('button', { name: 'Subir video' }).click();
  if (SHOTS) {
    await page.waitForFunction(() => Number(document.querySelector('#upload-progress').getAttribute('aria-valuenow')) >= 20, null, { timeout: 60_000 })
      .then(() => shot(page, 'upload-progress-laptop'), () => {});
  }
  await form.locator('#upload-status').getByText('Video subido correctamente. Procesamiento en curso.').waitFor({ timeout: 180_000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const transfer = await page.evaluate(() => window.__record);
  t.diagnostic(`transfer progress shown: ${JSON.stringify(transfer.values)}`);
  assert.ok(transfer.values.some((v) => v > 0 && v < 100), `transfer progress between 0 and 100 was shown: ${JSON.stringify(transfer.values)}`);
  assert.equal(Math.max(...transfer.values), 100, 'the transfer reached 100 %');

  // the card follows the video to processed by itself
  const card = page.locator('.my-card', { hasText: title });
  await card.waitFor();
  assert.equal(await card.locator('.card-title').textContent(), title, 'the title is shown as text');
  assert.equal(await card.locator('.card-title b').count(), 0, 'no markup from the title');
  await recordProgress(page, '.my-card');
  const token = await page.evaluate(() => sessionStorage.getItem('anb.token'));
  const videoId = Number(await card.getAttribute('data-video-id'));
  const withEvents = await serverHasEvents(token, videoId);

  const bar = card.getByRole('progressbar');
  await page.waitForFunction(() => ['processing', 'processed'].includes(document.querySelector('.my-card')?.dataset.status), null, { timeout: PROCESSING_TIMEOUT });
  if (await card.getAttribute('data-status') === 'processing') {
    assert.ok(await bar.isVisible(), 'a progress bar while processing');
    await shot(page, 'my-videos-processing-laptop');
  }
  await card.locator('.badge', { hasText: 'Publicado' }).waitFor({ timeout: PROCESSING_TIMEOUT });
  const seen = await page.evaluate(() => window.__record);
  t.diagnostic(`statuses ${seen.statuses.join(' -> ')}; transport ${seen.transports.join(' -> ')}; progress ${JSON.stringify(seen.values)}; indeterminate ${seen.indeterminate}; server stream ${withEvents}`);
  assert.ok(seen.statuses.includes('processing'), `the processing status was shown: ${seen.statuses}`);
  assert.ok(seen.values.length > 0 || seen.indeterminate, 'a progress bar was shown while processing');
  if (withEvents) {
    assert.equal(await card.getAttribute('data-transport'), 'sse', 'the page follows the server\'s event stream');
    assert.ok(seen.values.some((v) => v > 0 && v <= 100), `the processing progress was shown: ${JSON.stringify(seen.values)}`);
  } else {
    assert.equal(await card.getAttribute('data-transport'), 'polling', 'without a stream the page polls');
  }
  assert.ok(await bar.isHidden(), 'no progress bar once processed');
  assert.equal(await card.getByRole('button', { name: /Eliminar/ }).count(), 0, 'a processed video cannot be deleted');

  const video = card.locator('video');
  assert.equal(await video.getAttribute('controls'), '');
  await waitForVideoPlaying(page, video);
  await shot(page, 'my-videos-played-laptop');
  shared = { player, videoId, title };
});

test('2. a fan signs up, verifies the address, votes, sees the ranking change, and a second vote shows the server\'s message', { timeout: 600_000 }, async (t) => {
  mailDir();
  const { player, videoId } = await processedVideo();
  const page = await openPage(t, PHONE);
  const city = encodeURIComponent(player.city);

  // the ranking before
  await page.goto(`${BASE}/#/ranking?city=${city}`);
  const row = page.locator('#ranking-body tr', { hasText: username(player) });
  await row.waitFor();
  const votesBefore = Number(await row.locator('.col-votes').textContent());
  assert.equal(await row.locator('.col-city').textContent(), player.city);

  // the gallery, filtered by the player's city through the form
  await page.getByRole('link', { name: 'Galería' }).click();
  await page.locator('#gallery-filter').getByLabel('Ciudad').fill(player.city);
  await page.locator('#gallery-filter').getByRole('button', { name: 'Filtrar' }).click();
  await page.waitForURL(/#\/galeria\?city=/);
  const card = page.locator(`.card[data-video-id="${videoId}"]`);
  await card.waitFor();
  assert.equal(await page.locator('#gallery-list .card').count(), 1, 'the filter keeps the city\'s videos only');
  assert.equal(await card.locator('video').getAttribute('preload') !== 'auto', true, 'videos do not preload whole');

  // signed out, the vote button leads to the log-in
  await card.getByRole('button', { name: /^Votar/ }).click();
  await page.waitForURL(/#\/cuenta/);
  const fan = newUser('fan');
  const form = page.locator('#signup-form');
  await form.getByLabel('Nombre').fill(fan.first_name);
  await form.getByLabel('Apellido').fill(fan.last_name);
  await form.getByLabel('Correo electrónico').fill(fan.email);
  await form.getByLabel('Contraseña', { exact: true }).fill(fan.password);
  await form.getByLabel('Repite la contraseña').fill(fan.password);
  await form.getByLabel('Ciudad').fill(fan.city);
  await form.getByLabel('País').fill(fan.country);
  await form.getByRole('button', { name: 'Crear cuenta' }).click();
  // back in the filtered gallery, signed in, told where the verification message went
  await page.waitForURL(/#\/galeria\?city=/);
  await page.locator('#verify-notice').getByText(fan.email).waitFor();
  // the server wants verified voters: the link of that message
  await verifyByApi(fan.email);
  const button = card.getByRole('button', { name: /^Votar/ });
  await button.click();
  await card.locator('.card-msg').getByText('Voto registrado exitosamente.').waitFor();
  assert.ok(await card.getByRole('button', { name: /^Votado/ }).isDisabled(), 'the button is disabled after voting');
  assert.equal(await card.locator('.votes').textContent(), `${votesBefore + 1} ${votesBefore + 1 === 1 ? 'voto' : 'votos'}`);

  await page.getByRole('link', { name: 'Ranking' }).click();
  await page.waitForFunction(([name, want]) => {
    const tr = [...document.querySelectorAll('#ranking-body tr')].find((r) => r.textContent.includes(name));
    return tr && Number(tr.querySelector('.col-votes').textContent) === want;
  }, [username(player), votesBefore + 1]);

  // a second try, from another session of the same fan
  const again = await openPage(t, LAPTOP);
  await again.goto(`${BASE}/#/cuenta`);
  await logInInPage(again, fan);
  await again.goto(`${BASE}/#/galeria?city=${city}`);
  const card2 = again.locator(`.card[data-video-id="${videoId}"]`);
  await card2.getByRole('button', { name: /^Votar/ }).click();
  await card2.locator('.card-msg').getByText('Ya has votado por este video.').waitFor();
  assert.ok(await card2.getByRole('button', { name: /^Votado/ }).isDisabled());
  const votes = Number((await card2.locator('.votes').textContent()).split(' ')[0]);
  assert.equal(votes, votesBefore + 1, 'the second vote did not count');
});

test('3. rejected uploads show the server\'s message and leave nothing behind', { timeout: 300_000 }, async (t) => {
  const page = await openPage(t, PHONE);
  const player = newUser('rechazo');
  await signUpInPage(page, player);
  await page.goto(`${BASE}/#/mis-videos`);
  const form = page.locator('#upload-form');
  await page.locator('#my-status').getByText('Aún no has subido videos').waitFor();

  // too short: the browser says so first, and the server when sent anyway
  await form.getByLabel('Título').fill('Demasiado corto');
  await form.getByLabel('Archivo de video').setInputFiles(clipShort);
  await form.locator('#upload-file-check').getByText('fuera del rango permitido').waitFor();
  await form.getByRole('button', { name: 'Subir video' }).click();
  await form.locator('#upload-status').getByText('Enviar de todos modos').waitFor();
  await shot(page, 'upload-rejected-phone');
  await form.getByLabel('Enviar de todos modos').check();
  let answer = page.waitForResponse((r) => r.url().endsWith('/api/videos/upload'));
  await form.getByRole('button', { name: 'Subir video' }).click();
  let response = await answer;
  assert.equal(response.status(), 400);
  let detail = (await response.json()).detail;
  assert.match(detail, /^Duración 5(\.0)? s fuera del rango permitido/);
  await form.locator('#upload-status').getByText(detail, { exact: true }).waitFor();

  // not a video at all: the browser cannot read it and lets the server decide
  await form.getByLabel('Archivo de video').setInputFiles(junk);
  await form.locator('#upload-file-check').getByText('el servidor lo comprobará').waitFor();
  answer = page.waitForResponse((r) => r.url().endsWith('/api/videos/upload'));
  await form.getByRole('button', { name: 'Subir video' }).click();
  response = await answer;
  assert.equal(response.status(), 400);
  detail = (await response.json()).detail;
  await form.locator('#upload-status').getByText(detail, { exact: true }).waitFor();

  await page.getByRole('button', { name: 'Actualizar' }).click();
  await page.locator('#my-status').getByText('Aún no has subido videos').waitFor();
  assert.equal(await page.locator('.my-card').count(), 0, 'a rejected upload leaves nothing behind');
});

test('4. account messages: field errors, duplicate e-mail, wrong password, too many attempts', { timeout: 120_000 }, async (t) => {
  const page = await openPage(t, PHONE);
  await page.goto(`${BASE}/#/cuenta`);
  const signup = page.locator('#signup-form');
  const user = newUser('cuenta');

  // field errors as the server lists them
  await signup.getByLabel('Nombre').fill(user.first_name);
  await signup.getByLabel('Apellido').fill(user.last_name);
  await signup.getByLabel('Correo electrónico').fill(user.email);
  await signup.getByLabel('Contraseña', { exact: true }).fill('corta');
  await signup.getByLabel('Repite la contraseña').fill('distinta');
  await signup.getByRole('button', { name: 'Crear cuenta' }).click();
  await page.locator('#su-password1-error').getByText('La contraseña debe tener al menos 8 caracteres.').waitFor();
  await page.locator('#su-password2-error').getByText('Las contraseñas no coinciden.').waitFor();
  assert.notEqual(await page.locator('#su-city-error').textContent(), '', 'a missing city is named');
  assert.equal(await signup.getByLabel('Contraseña', { exact: true }).getAttribute('aria-invalid'), 'true');
  assert.notEqual(await page.locator('#signup-status').textContent(), '');
  await shot(page, 'account-errors-phone');

  // a registered e-mail
  await apiJson('POST', '/api/auth/signup', {
    body: { first_name: 'Ana', last_name: 'Pérez', email: user.email, password1: PASSWORD, password2: PASSWORD, city: user.city, country: 'Colombia' },
  });
  await signup.getByLabel('Correo electrónico').fill(user.email.toUpperCase());
  await signup.getByLabel('Contraseña', { exact: true }).fill(PASSWORD);
  await signup.getByLabel('Repite la contraseña').fill(PASSWORD);
  await signup.getByLabel('Ciudad').fill(user.city);
  await signup.getByLabel('País').fill(user.country);
  await signup.getByRole('button', { name: 'Crear cuenta' }).click();
  await page.locator('#signup-status').getByText('El correo electrónico ya está registrado.').waitFor();

  // wrong password, then too many attempts with the wait from Retry-After
  const login = page.locator('#login-form');
  const status = page.locator('#login-status');
  await login.getByLabel('Correo electrónico').fill(user.email);
  await login.getByLabel('Contraseña').fill('no-es-la-clave');
  let retryAfter = null;
  for (let i = 0; i < 12 && !retryAfter; i += 1) {
    const answer = page.waitForResponse((r) => r.url().endsWith('/api/auth/login'));
    await login.getByRole('button', { name: 'Entrar' }).click();
    const response = await answer;
    const { detail } = await response.json();
    await status.getByText(detail).waitFor();
    if (response.status() === 429) retryAfter = Number(response.headers()['retry-after']);
    else assert.equal(response.status(), 401);
    if (i === 0) assert.equal(await status.textContent(), detail, 'the wrong password message as the server gives it');
  }
  assert.ok(retryAfter > 0, 'the server limited the attempts');
  const wait = retryAfter < 60 ? `${retryAfter} s` : `${Math.ceil(retryAfter / 60)} min`;
  await status.getByText(`Podrás intentarlo de nuevo en ${wait}.`).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('anb.token')), null);
});

test('5. screenshots of every view, and no layout shift on a phone', { timeout: 600_000 }, async (t) => {
  const { player } = await processedVideo();
  for (const [device, viewport] of [['phone', PHONE], ['laptop', LAPTOP], ['small', SMALL]]) {
    const page = await openPage(t, viewport);
    await page.addInitScript(() => {
      window.__cls = 0;
      window.__shifts = [];
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          if (entry.hadRecentInput) continue;
          window.__cls += entry.value;
          window.__shifts.push({ value: entry.value, nodes: entry.sources?.map((s) => s.node?.className || s.node?.nodeName) });
        }
      }).observe({ type: 'layout-shift', buffered: true });
    });
    await page.goto(`${BASE}/`);
    await page.locator('#gallery-list .card').first().waitFor();
    // posters of the videos on screen
    await page.waitForFunction(() => [...document.querySelectorAll('#gallery-list video')]
      .filter((v) => v.getBoundingClientRect().top < innerHeight).every((v) => v.readyState >= 2), null, { timeout: 30_000 });
    await page.waitForTimeout(500);
    const aspect = await page.locator('#gallery-list video').first().evaluate((v) => v.getBoundingClientRect().width / v.getBoundingClientRect().height);
    assert.ok(Math.abs(aspect - 16 / 9) < 0.02, `videos keep 16:9 (${aspect})`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'nothing is wider than the screen');
    await shot(page, `gallery-${device}`);
    assert.deepEqual(await audit(page), [], 'gallery: labels and contrast');
    // keyboard: the skip link comes first and shows, focus is visible on the tabs
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
    assert.ok(await page.evaluate(() => document.activeElement.getBoundingClientRect().top >= 0), 'the skip link shows when focused');
    await page.locator('.tabs a').first().focus();
    await page.keyboard.press('Tab');
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'none', 'visible focus');
    if (device !== 'laptop') {
      const { cls, shifts } = await page.evaluate(() => ({ cls: window.__cls, shifts: window.__shifts }));
      t.diagnostic(`cumulative layout shift on the ${viewport.width} px gallery: ${cls.toFixed(4)} ${JSON.stringify(shifts)}`);
      assert.ok(cls < 0.1, `cumulative layout shift ${cls} < 0.1`);
    }

    await page.getByRole('link', { name: 'Ranking' }).click();
    await page.locator('#ranking-body tr').first().waitFor();
    await shot(page, `rankings-${device}`);
    assert.deepEqual(await audit(page), [], 'rankings: labels and contrast');
    assert.equal(await page.evaluate(() => document.querySelector('.table-wrap').scrollWidth - document.querySelector('.table-wrap').clientWidth), 0,
      'the ranking fits the screen');

    await page.getByRole('link', { name: 'Mis videos' }).click();
    await page.locator('#videos-signed-out').waitFor();
    await shot(page, `my-videos-signed-out-${device}`);

    await page.goto(`${BASE}/#/cuenta`);
    await page.locator('#signup-form').waitFor();
    await shot(page, `account-${device}`);
    assert.deepEqual(await audit(page), [], 'account: labels and contrast');

    await logInInPage(page, player);
    await page.goto(`${BASE}/#/mis-videos`);
    const video = page.locator('.my-card video').first();
    await video.waitFor();
    await video.scrollIntoViewIfNeeded();
    await page.waitForFunction((el) => el.readyState >= 2, await video.elementHandle(), { timeout: 30_000 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, `my-videos-${device}`);
    assert.deepEqual(await audit(page), [], 'my videos: labels and contrast');
    const overflowMine = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflowMine, 0, 'nothing is wider than the screen in Mis videos');
  }
});

// ------------------------------------------------------------------ the page's own logic, API answers mocked

const isPath = (pathname) => (url) => url.pathname === pathname;

test('6. gallery and ranking: paging, city filter and history (API mocked)', { timeout: 120_000 }, async (t) => {
  const page = await openPage(t, PHONE);
  const videoQueries = [];
  await page.route(isPath('/api/public/videos'), (route) => {
    const q = new URL(route.request().url()).searchParams;
    videoQueries.push(Object.fromEntries(q));
    const [limit, offset] = [Number(q.get('limit')), Number(q.get('offset'))];
    const total = q.get('city') ? 2 : 15;
    const items = [];
    for (let i = offset; i < Math.min(total, offset + limit); i += 1) {
      items.push({ video_id: 5000 + i, title: `<img src=x onerror=alert(1)> Video ${i + 1}`, username: `Jugador ${i + 1}`,
        city: q.get('city') || 'Bogotá', processed_url: `${BASE}/no-existe-${i}.mp4`, votes: 100 - i });
    }
    return route.fulfill({ json: items });
  });
  const rankingQueries = [];
  await page.route(isPath('/api/public/rankings'), (route) => {
    const q = new URL(route.request().url()).searchParams;
    rankingQueries.push(Object.fromEntries(q));
    const [limit, offset] = [Number(q.get('limit')), Number(q.get('offset'))];
    const rows = [];
    for (let i = offset; i < Math.min(23, offset + limit); i += 1) rows.push({ position: i + 1, username: `Jugador ${i + 1}`, city: 'Cali', votes: 500 - i });
    return route.fulfill({ json: rows });
  });

  await page.goto(`${BASE}/#/galeria`);
  const cards = page.locator('#gallery-list .card');
  await page.waitForFunction(() => document.querySelectorAll('#gallery-list .card').length === 12);
  assert.deepEqual(videoQueries.at(-1), { limit: '13', offset: '0' });
  assert.equal(await page.locator('#gallery-list img').count(), 0, 'titles are text, never markup');
  assert.equal(await cards.first().locator('.card-title').textContent(), '<img src=x onerror=alert(1)> Video 1');
  const pager = page.locator('#gallery-pager');
  assert.ok(await pager.getByRole('button', { name: /Anterior/ }).isDisabled());
  await pager.getByRole('button', { name: /Siguiente/ }).click();
  await page.waitForFunction(() => document.querySelectorAll('#gallery-list .card').length === 3);
  assert.match(page.url(), /#\/galeria\?page=2$/);
  assert.deepEqual(videoQueries.at(-1), { limit: '13', offset: '12' });
  assert.ok(await pager.getByRole('button', { name: /Siguiente/ }).isDisabled());
  assert.equal(await page.evaluate(() => document.activeElement.id), 'h-galeria', 'a new page: the focus on the heading');
  assert.ok(await page.evaluate(() => document.querySelector('#gallery-list .card').getBoundingClientRect().top < innerHeight), 'a new page starts on screen');
  assert.equal(await pager.locator('.pager-label').textContent(), 'Página 2');
  // a video whose link fails says so
  await cards.first().locator('.card-msg').getByText('No se pudo cargar el video').waitFor();

  await page.locator('#gallery-filter').getByLabel('Ciudad').fill('Medellín');
  await page.locator('#gallery-filter').getByLabel('Ciudad').press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#gallery-list .card').length === 2);
  assert.deepEqual(videoQueries.at(-1), { limit: '13', offset: '0', city: 'Medellín' });
  assert.ok(await pager.isHidden(), 'one page: no pager');
  await page.goBack();
  await page.waitForFunction(() => document.querySelectorAll('#gallery-list .card').length === 3);
  assert.equal(await page.locator('#gallery-filter').getByLabel('Ciudad').inputValue(), '');

  await page.getByRole('link', { name: 'Ranking' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#ranking-body tr').length === 10);
  assert.deepEqual(rankingQueries.at(-1), { limit: '11', offset: '0' });
  await page.locator('#ranking-pager').getByRole('button', { name: /Siguiente/ }).click();
  await page.waitForFunction(() => document.querySelector('#ranking-body .pos')?.textContent === '11');
  assert.deepEqual(rankingQueries.at(-1), { limit: '11', offset: '10' });
  await page.locator('#ranking-pager').getByRole('button', { name: /Siguiente/ }).click();
  await page.waitForFunction(() => document.querySelectorAll('#ranking-body tr').length === 3);
  assert.ok(await page.locator('#ranking-pager').getByRole('button', { name: /Siguiente/ }).isDisabled());
  await page.locator('#ranking-filter').getByLabel('Ciudad').fill('Cali');
  await page.locator('#ranking-filter').getByRole('button', { name: 'Filtrar' }).click();
  await page.waitForFunction(() => document.querySelector('#ranking-body .pos')?.textContent === '1');
  assert.deepEqual(rankingQueries.at(-1), { limit: '11', offset: '0', city: 'Cali' });
});

test('7. live status: the event stream, polling when it is missing, failure reason and delete (API mocked)', { timeout: 120_000 }, async (t) => {
  const page = await openPage(t, LAPTOP);
  await page.addInitScript(() => {
    if (sessionStorage.getItem('anb.token')) return;
    sessionStorage.setItem('anb.token', 'token-de-prueba');
    sessionStorage.setItem('anb.email', 'ana@example.com');
    sessionStorage.setItem('anb.expiresAt', String(Date.now() + 3_600_000));
  });
  const base = { uploaded_at: '2026-03-01T12:00:00Z', processed_at: null, processed_url: null };
  const detail = (id, status, extra = {}) => ({ video_id: id, title: `Clip ${id}`, status, ...base, original_url: `${BASE}/o.mp4`, votes: 0, ...extra });
  let deleted = false;
  await page.route(isPath('/api/videos'), (route) => {
    assert.equal(route.request().headers().authorization, 'Bearer token-de-prueba');
    const list = [{ video_id: 2, title: 'Clip 2', status: 'processing', ...base }];
    if (!deleted) list.push({ video_id: 1, title: 'Clip 1', status: 'uploaded', ...base });
    return route.fulfill({ json: list });
  });
  // video 2 has a stream: CRLF and LF line ends, a comment, a named event, the last one's data over two lines
  await page.route(isPath('/api/videos/2/events'), (route) => {
    assert.equal(route.request().headers().authorization, 'Bearer token-de-prueba');
    const events = [
      ': conectado\r\n\r\n',
      `event: status\r\ndata: ${JSON.stringify(detail(2, 'processing', { progress: 10 }))}\r\n\r\n`,
      `data: ${JSON.stringify(detail(2, 'processing', { progress: 55 }))}\n\n`,
      `data: ${JSON.stringify(detail(2, 'processed', { processed_at: '2026-03-01T12:01:00Z', processed_url: `${BASE}/p.mp4` })).replace(',', ',\r\ndata: ')}\r\n\r\n`,
    ];
    return route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: events.join('') });
  });
  // video 1 has none (404): the page polls its detail
  await page.route(isPath('/api/videos/1/events'), (route) => route.fulfill({
    status: 404, contentType: 'application/problem+json', body: JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'Recurso no encontrado.' }),
  }));
  const polls = [detail(1, 'processing'), detail(1, 'processing', { progress: 40 }), detail(1, 'failed', { failure_reason: 'El archivo está dañado.' })];
  let polled = 0;
  let deletes = 0;
  await page.route(isPath('/api/videos/1'), (route) => {
    if (route.request().method() === 'DELETE') {
      deletes += 1;
      if (deletes === 1) {
        return route.fulfill({ status: 400, contentType: 'application/problem+json', body: JSON.stringify({ type: 'about:blank', title: 'Bad Request', status: 400, detail: 'Mensaje del servidor: no se puede.' }) });
      }
      deleted = true;
      return route.fulfill({ json: { message: 'El video ha sido eliminado exitosamente.', video_id: 1 } });
    }
    const answer = polls[Math.min(polled, polls.length - 1)];
    polled += 1;
    return route.fulfill({ json: answer });
  });
  page.on('dialog', (dialog) => dialog.accept());

  await page.goto(`${BASE}/#/mis-videos`);
  await recordProgress(page, '.my-card[data-video-id="2"]');
  const streamed = page.locator('.my-card[data-video-id="2"]');
  await streamed.locator('.badge', { hasText: 'Publicado' }).waitFor();
  assert.equal(await streamed.getAttribute('data-transport'), 'sse');
  assert.equal(await streamed.locator('video[controls]').getAttribute('data-src'), `${BASE}/p.mp4`, 'the processed video is playable in place');

  const polledCard = page.locator('.my-card[data-video-id="1"]');
  await polledCard.locator('.failure').getByText('Motivo: El archivo está dañado.').waitFor({ timeout: 20_000 });
  assert.equal(await polledCard.getAttribute('data-transport'), 'polling');
  assert.ok(polled >= 3, 'the detail was polled until failed');
  const afterFinal = polled;
  await page.waitForTimeout(2500);
  assert.equal(polled, afterFinal, 'polling stops once failed');

  // delete: the server's refusal, then the deletion
  await polledCard.getByRole('button', { name: /Eliminar/ }).click();
  await polledCard.locator('.card-msg').getByText('Mensaje del servidor: no se puede.').waitFor();
  await polledCard.getByRole('button', { name: /Eliminar/ }).click();
  await polledCard.waitFor({ state: 'detached' });
  await page.locator('#toast').getByText('El video ha sido eliminado exitosamente.').waitFor();
});

test('8. an expired session sends the person back to the log-in form (API mocked)', { timeout: 60_000 }, async (t) => {
  const page = await openPage(t, PHONE);
  await page.addInitScript(() => {
    sessionStorage.setItem('anb.token', 'caducado');
    sessionStorage.setItem('anb.email', 'ana@example.com');
    sessionStorage.setItem('anb.expiresAt', String(Date.now() + 3_600_000));
  });
  await page.route(isPath('/api/videos'), (route) => route.fulfill({
    status: 401, contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'No autenticado: falta el token o no es válido.' }),
  }));
  await page.goto(`${BASE}/#/mis-videos`);
  await page.waitForURL(/#\/cuenta$/);
  await page.locator('#login-status').getByText('Inicia sesión de nuevo').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('anb.token')), null);
  assert.ok(await page.getByRole('link', { name: 'Entrar', exact: true }).isVisible());
});

// ------------------------------------------------------------------ verified addresses and one's own videos (the real server)

test('9. the page says where the verification message went, and its link verifies the address once', { timeout: 120_000 }, async (t) => {
  mailDir();
  const page = await openPage(t, PHONE);
  const user = newUser('verifica');
  await signUpInPage(page, user);
  const sent = `Te enviamos un correo a ${user.email} con un enlace para verificar tu dirección.`;
  const notice = page.locator('#verify-notice');
  await notice.waitFor();
  assert.ok((await notice.innerText()).includes(sent), `the notice names the address: ${await notice.innerText()}`);
  assert.ok((await page.locator('#toast').textContent()).includes(sent), 'so does the message after the sign-up');
  await shot(page, 'verify-notice-phone');
  assert.deepEqual(await audit(page), [], 'the notice: labels and contrast');
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), 0,
    'the notice fits a phone');
  await page.goto(`${BASE}/#/cuenta`);
  await page.locator('#account-verified').getByText('Correo sin verificar').waitFor();

  // the message as the server wrote it, and its link opened in the page
  // (the relay sends within a second or so: wait for it)
  const token = await verificationToken(user.email);
  const [message] = messagesTo(user.email);
  assert.ok(message, `a message to ${user.email} in ${MAIL_DIR}`);
  await page.goto(`${BASE}/#/verificar?token=${token}`);
  const status = page.locator('#verify-status');
  await status.getByText('Correo verificado.', { exact: true }).waitFor();
  assert.ok(await notice.isHidden(), 'no notice once verified');
  await shot(page, 'verify-ok-phone');
  assert.deepEqual(await audit(page), [], 'verified: labels and contrast');
  await page.locator('#verify-actions').getByRole('link', { name: 'Ir a la galería' }).click();
  await page.waitForURL(/#\/galeria$/);
  assert.ok(await notice.isHidden(), 'still no notice in the gallery');
  await page.goto(`${BASE}/#/cuenta`);
  await page.locator('#account-verified').getByText('Correo verificado.').waitFor();

  // the same link again, from a browser that is not signed in: used once
  const again = await openPage(t, LAPTOP);
  await again.goto(`${BASE}/#/verificar?token=${token}`);
  await again.locator('#verify-status').getByText('El enlace de verificación ya fue usado.', { exact: true }).waitFor();
  assert.ok(await again.locator('#verify-actions').getByRole('link', { name: 'Iniciar sesión' }).isVisible(), 'onward: log in');
  await shot(again, 'verify-used-laptop');
  assert.deepEqual(await audit(again), [], 'used link: labels and contrast');
  // a forged link
  await again.goto(`${BASE}/#/verificar?token=${'0'.repeat(64)}`);
  await again.locator('#verify-status').getByText('El enlace de verificación no es válido.', { exact: true }).waitFor();
  // logging in from there leads to the gallery, not back to the link
  await again.locator('#verify-actions').getByRole('link', { name: 'Iniciar sesión' }).click();
  await again.waitForURL(/#\/cuenta$/);
  await logInInPage(again, user);
  await again.waitForURL(/#\/galeria$/);
});

test('10. an unverified voter is told why the vote is refused, asks for a new link, verifies and votes', { timeout: 600_000 }, async (t) => {
  mailDir();
  const { player, videoId } = await processedVideo();
  const page = await openPage(t, LAPTOP);
  const fan = newUser('sinverificar');
  await signUpInPage(page, fan);
  await page.goto(`${BASE}/#/galeria?city=${encodeURIComponent(player.city)}`);
  const card = page.locator(`.card[data-video-id="${videoId}"]`);
  await card.waitFor();
  const count = async () => Number((await card.locator('.votes').textContent()).split(' ')[0]);
  const votesBefore = await count();

  await card.getByRole('button', { name: /^Votar/ }).click();
  await card.locator('.card-msg').getByText('Verifica tu correo electrónico para votar.', { exact: true }).waitFor();
  assert.equal(await count(), votesBefore, 'the refused vote did not count');
  assert.ok(await card.getByRole('button', { name: /^Votar/ }).isEnabled(), 'the vote can be tried again');
  const resend = card.getByRole('button', { name: /Reenviar correo/ });
  await shot(page, 'vote-unverified-laptop');
  assert.deepEqual(await audit(page), [], 'the refusal: labels and contrast');

  await resend.click();
  await card.locator('.card-msg').getByText('Te enviamos un nuevo enlace de verificación. Revisa tu correo.', { exact: true }).waitFor();
  // the sign-up's message and the new one
  const token = await verificationToken(fan.email, { count: 2 });
  assert.equal(messagesTo(fan.email).length, 2, 'one message more');

  await page.goto(`${BASE}/#/verificar?token=${token}`);
  await page.locator('#verify-status').getByText('Correo verificado.', { exact: true }).waitFor();
  await page.goBack();
  await page.waitForURL(/#\/galeria\?city=/);
  assert.ok(await page.locator('#verify-notice').isHidden(), 'no notice once verified');
  await card.getByRole('button', { name: /^Votar/ }).click();
  await card.locator('.card-msg').getByText('Voto registrado exitosamente.', { exact: true }).waitFor();
  assert.equal(await count(), votesBefore + 1, 'the vote counts');
  assert.equal(await card.getByRole('button', { name: /Reenviar correo/ }).count(), 0, 'no resend button once voted');

  // asked again, the server says the address is verified already
  await page.goto(`${BASE}/#/cuenta`);
  await page.locator('#account-verified').getByText('Correo verificado.').waitFor();
  const { access_token: bearer } = await apiJson('POST', '/api/auth/login', { body: { email: fan.email, password: fan.password } });
  assert.equal((await apiJson('POST', '/api/auth/resend-verification', { token: bearer })).message, 'Tu correo ya está verificado.');
});

test('11. one\'s own card offers no vote; another person\'s view of it does', { timeout: 600_000 }, async (t) => {
  mailDir();
  const { player, videoId } = await processedVideo();
  const gallery = `${BASE}/#/galeria?city=${encodeURIComponent(player.city)}`;

  // the player who uploaded it
  const page = await openPage(t, PHONE);
  await page.goto(`${BASE}/#/cuenta`);
  await logInInPage(page, player);
  await page.goto(gallery);
  const card = page.locator(`.card[data-video-id="${videoId}"]`);
  await card.locator('.own-label').getByText('Tu video', { exact: true }).waitFor();
  assert.equal(await card.getByRole('button').count(), 0, 'no vote button on one\'s own card');
  assert.match(await card.locator('.votes').textContent(), /^\d+ votos?$/, 'the votes are still shown');
  await shot(page, 'gallery-own-video-phone');
  assert.deepEqual(await audit(page), [], 'own card: labels and contrast');

  // another signed-in, verified person
  const other = newUser('otro');
  await signUpByApi(other);
  await verifyByApi(other.email);
  const page2 = await openPage(t, LAPTOP);
  await page2.goto(`${BASE}/#/cuenta`);
  await logInInPage(page2, other);
  await page2.goto(gallery);
  const card2 = page2.locator(`.card[data-video-id="${videoId}"]`);
  await card2.waitFor();
  assert.ok(await card2.getByRole('button', { name: /^Votar/ }).isEnabled(), 'another person can vote');
  assert.equal(await card2.locator('.own-label').count(), 0);
  assert.ok(await page2.locator('#verify-notice').isHidden(), 'no notice for a verified address');

  // when the page could not learn the player's own videos, the server's refusal is shown and the card becomes theirs
  await ensureVerified(player); // else the server refuses the unverified voter first
  const page3 = await openPage(t, LAPTOP);
  let failing = true;
  let asked = 0;
  await page3.route(isPath('/api/videos'), (route) => {
    if (!failing) {
      asked += 1;
      return route.continue();
    }
    return route.fulfill({ status: 503, contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'No disponible.' }) });
  });
  await page3.goto(`${BASE}/#/cuenta`);
  await logInInPage(page3, player);
  await page3.goto(gallery);
  const card3 = page3.locator(`.card[data-video-id="${videoId}"]`);
  const votesBefore = await card3.locator('.votes').textContent();
  failing = false;
  await card3.getByRole('button', { name: /^Votar/ }).click();
  await card3.locator('.card-msg').getByText('No puedes votar por tu propio video.', { exact: true }).waitFor();
  await card3.locator('.own-label').getByText('Tu video', { exact: true }).waitFor();
  assert.equal(await card3.getByRole('button').count(), 0, 'no vote button once known');
  assert.equal(await card3.locator('.votes').textContent(), votesBefore, 'the refused vote did not count');
  assert.equal(asked, 1, 'after the refusal the page asked for the list of one\'s videos again');
});
