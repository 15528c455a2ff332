// ANB Rising Stars Showcase: the page of players and fans.
// Plain ES module, no framework, no build step. Every string that comes from
// the server is put into the page as text (textContent), never as markup.

const GALLERY_PAGE = 12;
const RANKING_PAGE = 10;
const MAX_BYTES = 104_857_600; // as the server counts it (UploadRules)
const MAX_MEGABYTES = MAX_BYTES / 1_048_576;
const MIN_SECONDS = 20;
const MAX_SECONDS = 60;
const MIN_SHORT_SIDE = 1080;
const POLL_MS = 2000;
const MAX_STREAMS = 2; // an HTTP/1.1 browser opens at most 6 connections per host
const POSTER_AT = 4; // seconds: past the 2.5 s intro card, so the poster shows the player
const FINAL = new Set(['processed', 'failed']);
const STATUS_TEXT = {
  uploaded: 'En cola',
  processing: 'Procesando',
  processed: 'Publicado',
  failed: 'Falló',
};

// ---------------------------------------------------------------- helpers

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element; string children become text nodes, never markup. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });

const intFormat = new Intl.NumberFormat('es');
const votesText = (n) => `${intFormat.format(n)} ${n === 1 ? 'voto' : 'votos'}`;
const megabytes = (bytes) => (bytes / 1_048_576).toFixed(1);
const dateFormat = new Intl.DateTimeFormat('es', { dateStyle: 'medium', timeStyle: 'short' });
function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
}

/** "45 s", "5 min": how long to wait, from a Retry-After header value. */
function waitText(retryAfter) {
  if (!retryAfter) return '';
  let seconds = Number(retryAfter);
  if (!Number.isFinite(seconds)) {
    const at = Date.parse(retryAfter);
    if (Number.isNaN(at)) return '';
    seconds = Math.max(0, (at - Date.now()) / 1000);
  }
  seconds = Math.ceil(seconds);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} min`;
}

function setStatus(el, text, kind = '') {
  el.textContent = text || '';
  el.classList.toggle('is-error', kind === 'error');
  el.classList.toggle('is-success', kind === 'success');
  el.classList.toggle('is-info', kind === 'info');
  el.classList.toggle('is-empty', kind === 'empty');
}

let toastTimer;
function toast(text) {
  const el = $('#toast');
  el.textContent = text;
  el.classList.add('is-visible');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('is-visible'), 4500);
}

/** A progress bar: a number 0–100, or null for "working, share unknown". */
function setProgress(bar, percent) {
  const fill = bar.firstElementChild;
  if (typeof percent === 'number' && Number.isFinite(percent)) {
    const value = Math.max(0, Math.min(100, percent));
    if (bar.classList.contains('is-indeterminate')) {
      // no sliding from the animated stripe to the value
      fill.style.transition = 'none';
      bar.classList.remove('is-indeterminate');
      fill.style.width = `${value}%`;
      void fill.offsetWidth;
      fill.style.transition = '';
    }
    bar.setAttribute('aria-valuenow', String(Math.round(value)));
    bar.setAttribute('aria-valuetext', `${Math.round(value)} %`);
    fill.style.width = `${value}%`;
  } else {
    bar.classList.add('is-indeterminate');
    bar.removeAttribute('aria-valuenow');
    bar.setAttribute('aria-valuetext', 'En curso');
    fill.style.width = '';
  }
}

function progressBar(label) {
  return h('div', { class: 'progress', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100' },
    h('span', { class: 'progress-fill' }));
}

// ---------------------------------------------------------------- session

const store = window.sessionStorage;
const storedFlag = (key) => ({ 1: true, 0: false })[store.getItem(key)] ?? null;
const session = {
  token: store.getItem('anb.token') || '',
  email: store.getItem('anb.email') || '',
  expiresAt: Number(store.getItem('anb.expiresAt') || 0),
  voted: new Set(JSON.parse(store.getItem('anb.voted') || '[]')),
  /** Whether the address is verified, as GET /api/auth/me last said; null when unknown. */
  verified: storedFlag('anb.verified'),
  /** A verification message went out in this session (the sign-up's): the notice says where. */
  mailSent: store.getItem('anb.mailSent') === '1',
  /** The signed-in player's own video ids (no vote button on those), from GET /api/videos. */
  own: new Set(),
};
const SESSION_KEYS = ['anb.token', 'anb.email', 'anb.expiresAt', 'anb.voted', 'anb.verified', 'anb.mailSent'];
let expiryTimer;

const signedIn = () => Boolean(session.token) && Date.now() < session.expiresAt;

function saveSession() {
  store.setItem('anb.token', session.token);
  store.setItem('anb.email', session.email);
  store.setItem('anb.expiresAt', String(session.expiresAt));
  store.setItem('anb.voted', JSON.stringify([...session.voted]));
  if (session.verified === null) store.removeItem('anb.verified');
  else store.setItem('anb.verified', session.verified ? '1' : '0');
  if (session.mailSent) store.setItem('anb.mailSent', '1');
  else store.removeItem('anb.mailSent');
}

function startSession(token, email, expiresIn, verified = null) {
  session.token = token;
  session.email = email;
  session.expiresAt = Date.now() + Math.max(1, Number(expiresIn) || 3600) * 1000;
  session.voted = new Set();
  session.verified = verified;
  session.mailSent = false;
  session.own = new Set();
  saveSession();
  scheduleExpiry();
  renderSession();
}

function endSession() {
  session.token = '';
  session.email = '';
  session.expiresAt = 0;
  session.voted = new Set();
  session.verified = null;
  session.mailSent = false;
  session.own = new Set();
  for (const key of SESSION_KEYS) store.removeItem(key);
  clearTimeout(expiryTimer);
  stopAllWatchers();
  uploadXhr?.abort();
  myCards.clear();
  $('#my-list').replaceChildren();
  renderSession();
}

function scheduleExpiry() {
  clearTimeout(expiryTimer);
  if (!session.token) return;
  const left = session.expiresAt - Date.now();
  if (left <= 0) return;
  // setTimeout holds at most ~24.8 days; tokens last an hour.
  expiryTimer = setTimeout(() => sessionLost('Tu sesión expiró. Inicia sesión de nuevo.'), Math.min(left, 2 ** 31 - 1));
}

/** The server refused our token (expired or revoked): back to the log-in form. */
function sessionLost(message = 'Tu sesión expiró o ya no es válida. Inicia sesión de nuevo.') {
  if (!session.token) return;
  endSession();
  toast(message);
  setStatus($('#login-status'), message, 'error');
  if (currentView !== 'cuenta') {
    returnTo = location.hash.startsWith('#/') && !noReturn(location.hash) ? location.hash : '';
    go('#/cuenta');
  } else {
    render();
  }
}

function renderSession() {
  const inside = signedIn();
  $('#session-user').textContent = inside ? session.email : '';
  $('#session-user').title = inside ? `Sesión iniciada como ${session.email}` : '';
  $('#login-link').hidden = inside;
  $('#logout').hidden = !inside;
  $('#account-email').textContent = session.email;
  renderVerification();
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, detail, errors = [], retryAfter = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.errors = errors;
    this.retryAfter = retryAfter;
  }
}

const NETWORK_MESSAGE = 'No se pudo conectar con el servidor. Revisa tu conexión e inténtalo de nuevo.';

/** The error an answer carries: the problem+json `detail` and `errors`, as the server gives them. */
function problemFrom(status, text, header) {
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  let detail = body && typeof body.detail === 'string' && body.detail ? body.detail : '';
  if (!detail) {
    detail = status === 413 ? `El archivo supera el tamaño máximo permitido (${MAX_MEGABYTES} MB).`
      : status >= 500 ? 'El servidor no pudo atender la solicitud. Inténtalo de nuevo en unos momentos.'
        : `La solicitud falló (error ${status}).`;
  }
  const errors = Array.isArray(body?.errors)
    ? body.errors.filter((e) => e && typeof e.field === 'string' && typeof e.message === 'string') : [];
  return new ApiError(status, detail, errors, header('retry-after'));
}

/**
 * Calls the API; resolves to the parsed JSON body, throws ApiError otherwise.
 * A 401 on an authenticated call ends the session, unless `keepSession` (a call made
 * in the background, e.g. to know one's own videos, must not throw the person out).
 */
async function api(path, { method = 'GET', body, auth = false, token = session.token, signal, keepSession = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(0, NETWORK_MESSAGE);
  }
  const text = await response.text();
  if (!response.ok) {
    const problem = problemFrom(response.status, text, (name) => response.headers.get(name));
    if (response.status === 401 && auth && !keepSession) sessionLost();
    throw problem;
  }
  try { return text ? JSON.parse(text) : null; } catch { throw new ApiError(response.status, 'Respuesta no válida del servidor.'); }
}

// ---------------------------------------------------------------- router

const VIEWS = {
  galeria: 'Galería', ranking: 'Ranking', 'mis-videos': 'Mis videos', cuenta: 'Tu cuenta', verificar: 'Verificar correo',
};
/** Views not to come back to after logging in: a verification link is used once. */
const noReturn = (hash) => /^#\/(cuenta|verificar)\b/.test(hash || '');
let currentView = '';
let returnTo = '';
let lastHash = '#/galeria';

function route() {
  const match = location.hash.match(/^#\/([^?]*)(?:\?(.*))?$/);
  const view = match && VIEWS[match[1]] ? match[1] : 'galeria';
  return { view, params: new URLSearchParams(match?.[2] || '') };
}

let focusOnRoute = true;

/** Shows a view; `focus` moves the focus to its heading (not after a filter or a page change). */
function go(hash, { focus = true } = {}) {
  if (location.hash === hash) {
    render(false);
  } else {
    focusOnRoute = focus;
    location.hash = hash;
  }
}

function render(moveFocus = false) {
  const { view, params } = route();
  if (view === 'cuenta' && currentView && currentView !== 'cuenta' && !returnTo) returnTo = lastHash;
  if (view !== 'cuenta') {
    if (view !== 'verificar') lastHash = location.hash.startsWith('#/') ? location.hash : '#/galeria';
    returnTo = '';
  }
  currentView = view;
  renderVerification();
  for (const id of Object.keys(VIEWS)) $(`#view-${id}`).hidden = id !== view;
  for (const link of document.querySelectorAll('.tabs a')) {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${VIEWS[view]} · ANB Rising Stars Showcase`;
  if (view === 'galeria') showGallery(params);
  else if (view === 'ranking') showRanking(params);
  else if (view === 'mis-videos') showMyVideos();
  else if (view === 'verificar') showVerify(params);
  else showAccount();
  if (moveFocus) {
    const heading = $(`#view-${view} h1`);
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
}

function pageOf(params) {
  const page = Number.parseInt(params.get('page') || '1', 10);
  return Number.isFinite(page) && page > 0 ? page : 1;
}

function listHash(view, city, page) {
  const q = new URLSearchParams();
  if (city) q.set('city', city);
  if (page > 1) q.set('page', String(page));
  const s = q.toString();
  return `#/${view}${s ? `?${s}` : ''}`;
}

function setupPager(pager, view, city, page, hasMore, shown) {
  pager.hidden = page === 1 && !hasMore;
  const [prev, next] = pager.querySelectorAll('button');
  prev.disabled = page <= 1;
  next.disabled = !hasMore;
  pager.querySelector('.pager-label').textContent = shown ? `Página ${page}` : `Página ${page} (vacía)`;
  if (pager.dataset.used) {
    // a new page: back to the top of the view, the focus on its heading (the button pressed may now be disabled)
    delete pager.dataset.used;
    const heading = $(`#view-${view} h1`);
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
    $(`#view-${view}`).scrollIntoView({ block: 'start' });
  }
  pager.onclick = (event) => {
    const button = event.target.closest('button[data-dir]');
    if (!button || button.disabled) return;
    pager.dataset.used = '1';
    go(listHash(view, city, page + Number(button.dataset.dir)), { focus: false });
  };
}

// ---------------------------------------------------------------- lazy videos

const lazyObserver = 'IntersectionObserver' in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        lazyObserver.unobserve(entry.target);
        armVideo(entry.target);
      }
    }
  }, { rootMargin: '200px 0px' })
  : null;

/** Loads a video's metadata (and so its poster frame) only once it is near the screen. */
function armVideo(video) {
  if (!video.dataset.src || video.getAttribute('src')) return;
  video.preload = 'metadata';
  video.src = `${video.dataset.src}#t=${POSTER_AT}`;
}

/** Stops watching and loading the videos of a list about to be replaced. */
function releaseVideos(root) {
  for (const video of root.querySelectorAll('video')) {
    lazyObserver?.unobserve(video);
    if (video.getAttribute('src')) {
      video.removeAttribute('src');
      video.load();
    }
  }
}

function lazyVideo(url, label, onError) {
  const video = h('video', {
    controls: true, preload: 'none', playsinline: true, 'aria-label': label, dataset: { src: url },
  });
  video.addEventListener('play', () => {
    // The poster frame was taken a few seconds in; the first play starts at the beginning.
    if (!video.dataset.started) {
      video.dataset.started = '1';
      if (Math.abs(video.currentTime - POSTER_AT) < 0.5) video.currentTime = 0;
    }
  });
  video.addEventListener('error', () => {
    video.dataset.failed = '1';
    onError?.(video);
  });
  if (lazyObserver) lazyObserver.observe(video);
  else armVideo(video);
  return video;
}

// ---------------------------------------------------------------- gallery

let gallerySeq = 0;

async function showGallery(params) {
  const city = (params.get('city') || '').trim();
  const page = pageOf(params);
  $('#gallery-city').value = city;
  const seq = ++gallerySeq;
  const status = $('#gallery-status');
  setStatus(status, 'Cargando videos…', 'info');
  const q = new URLSearchParams({ limit: String(GALLERY_PAGE + 1), offset: String((page - 1) * GALLERY_PAGE) });
  if (city) q.set('city', city);
  let items;
  try {
    // signed in: one's own videos too, so their cards offer no vote
    [items] = await Promise.all([api(`/api/public/videos?${q}`), signedIn() ? loadOwnIds() : null]);
  } catch (error) {
    if (seq !== gallerySeq) return;
    setStatus(status, error.detail, 'error');
    return;
  }
  if (seq !== gallerySeq) return;
  const hasMore = items.length > GALLERY_PAGE;
  const shown = items.slice(0, GALLERY_PAGE);
  releaseVideos($('#gallery-list'));
  $('#gallery-list').replaceChildren(...shown.map(galleryCard));
  if (shown.length === 0) {
    setStatus(status, city ? `No hay videos publicados de ${city}.` : 'Aún no hay videos publicados.', 'empty');
  } else {
    const where = city ? ` de ${city}` : '';
    setStatus(status, `${shown.length} ${shown.length === 1 ? 'video' : 'videos'}${where} en esta página.`);
  }
  setupPager($('#gallery-pager'), 'galeria', city, page, hasMore, shown.length > 0);
}

function galleryCard(item) {
  const card = {
    item,
    message: h('p', { class: 'card-msg', role: 'status' }),
    votes: h('span', { class: 'votes', text: votesText(item.votes) }),
    button: null,
    extra: h('div', { class: 'card-extra' }),
  };
  card.row = h('div', { class: 'vote-row' }, card.votes);
  if (session.own.has(item.video_id) && signedIn()) {
    card.row.prepend(ownLabel());
  } else {
    const voted = session.voted.has(item.video_id);
    card.button = h('button', {
      class: 'btn btn-vote', type: 'button',
      'aria-label': `${voted ? 'Votado' : 'Votar'}: «${item.title}» de ${item.username}`,
      disabled: voted,
    }, voted ? 'Votado ✓' : 'Votar');
    card.button.addEventListener('click', () => vote(card));
    card.row.prepend(card.button);
  }
  const video = lazyVideo(item.processed_url, `Video «${item.title}» de ${item.username}`, () => {
    setStatus(card.message, 'No se pudo cargar el video: el enlace pudo expirar. Recarga la galería.', 'error');
  });
  return h('li', { class: 'card', dataset: { videoId: item.video_id } },
    h('div', { class: 'media' }, video),
    h('div', { class: 'card-body' },
      h('h2', { class: 'card-title', text: item.title, title: item.title }),
      h('p', { class: 'meta' }, h('span', { class: 'player', text: item.username }), h('span', { class: 'city', text: item.city })),
      card.row,
      card.message,
      card.extra));
}

/** In place of the vote button on one's own video. */
const ownLabel = () => h('span', { class: 'own-label' }, 'Tu video');

/** The signed-in player's own video ids (GET /api/videos); what was known before when the call fails. */
async function loadOwnIds() {
  const { token } = session;
  try {
    const list = await api('/api/videos', { auth: true, keepSession: true });
    if (session.token === token && Array.isArray(list)) session.own = new Set(list.map((v) => v.video_id));
  } catch { /* keep what we knew: the server refuses a vote on one's own video anyway */ }
  return session.own;
}

async function vote(card) {
  const { item, button, votes, message, extra } = card;
  if (!signedIn()) {
    setStatus(message, 'Inicia sesión para votar.', 'info');
    toast('Inicia sesión para votar.');
    returnTo = location.hash;
    go('#/cuenta');
    return;
  }
  button.disabled = true;
  setStatus(message, 'Enviando tu voto…', 'info');
  try {
    const answer = await api(`/api/public/videos/${item.video_id}/vote`, { method: 'POST', auth: true });
    item.votes += 1;
    votes.textContent = votesText(item.votes);
    markVoted(item, button);
    extra.replaceChildren();
    setStatus(message, answer?.message || 'Voto registrado.', 'success');
  } catch (error) {
    if (error.status === 401) return;
    setStatus(message, error.detail, 'error');
    if (error.status === 403) {
      // an address not verified yet: a new link from here
      button.disabled = false;
      if (!extra.firstChild) extra.append(resendButton(message));
    } else if (error.status === 400) {
      // already voted, or one's own video (the list of one's videos was not known)
      const own = await loadOwnIds();
      if (own.has(item.video_id)) {
        button.replaceWith(ownLabel());
        card.button = null;
      } else {
        markVoted(item, button);
      }
    } else {
      button.disabled = false;
    }
  }
}

function markVoted(item, button) {
  session.voted.add(item.video_id);
  saveSession();
  button.disabled = true;
  button.textContent = 'Votado ✓';
  button.setAttribute('aria-label', `Votado: «${item.title}» de ${item.username}`);
}

// ---------------------------------------------------------------- rankings

let rankingSeq = 0;

async function showRanking(params) {
  const city = (params.get('city') || '').trim();
  const page = pageOf(params);
  $('#ranking-city').value = city;
  const seq = ++rankingSeq;
  const status = $('#ranking-status');
  setStatus(status, 'Cargando ranking…', 'info');
  const q = new URLSearchParams({ limit: String(RANKING_PAGE + 1), offset: String((page - 1) * RANKING_PAGE) });
  if (city) q.set('city', city);
  let rows;
  try {
    rows = await api(`/api/public/rankings?${q}`);
  } catch (error) {
    if (seq !== rankingSeq) return;
    setStatus(status, error.detail, 'error');
    return;
  }
  if (seq !== rankingSeq) return;
  const hasMore = rows.length > RANKING_PAGE;
  const shown = rows.slice(0, RANKING_PAGE);
  $('#ranking-body').replaceChildren(...shown.map((row) => h('tr', { class: row.position <= 3 ? `top top-${row.position}` : '' },
    h('td', { class: 'col-pos' }, h('span', { class: 'pos', text: String(row.position) })),
    h('td', { class: 'col-player' }, h('span', { text: row.username }), h('span', { class: 'player-city', text: row.city })),
    h('td', { class: 'col-city', text: row.city }),
    h('td', { class: 'col-votes', text: intFormat.format(row.votes) }))));
  $('#ranking-table').hidden = shown.length === 0;
  $('#ranking-caption').textContent = city ? `Ranking de jugadores de ${city}, página ${page}` : `Ranking de jugadores, página ${page}`;
  if (shown.length === 0) {
    setStatus(status, city ? `Aún no hay jugadores con videos publicados en ${city}.` : 'Aún no hay jugadores con videos publicados.', 'empty');
  } else {
    setStatus(status, city ? `Jugadores de ${city}.` : 'Jugadores de todas las ciudades.');
  }
  setupPager($('#ranking-pager'), 'ranking', city, page, hasMore, shown.length > 0);
}

// ---------------------------------------------------------------- account

function showAccount() {
  const inside = signedIn();
  $('#account-signed-in').hidden = !inside;
  $('#account-forms').hidden = inside;
}

function clearFieldErrors(form) {
  for (const input of form.querySelectorAll('input')) input.removeAttribute('aria-invalid');
  for (const p of form.querySelectorAll('.field-error')) p.textContent = '';
}

async function logIn(email, password) {
  const answer = await api('/api/auth/login', { method: 'POST', body: { email, password } });
  // whether the address is verified, known before the session starts and the next view shows
  // (so the notice does not push that view down a moment later)
  const verified = await fetchVerified(answer.access_token, 2500);
  startSession(answer.access_token, email, answer.expires_in, verified);
}

function afterLogIn(fallback) {
  const target = returnTo && !noReturn(returnTo) ? returnTo : fallback;
  returnTo = '';
  go(target);
}

/** The server's message, with how long to wait when it limits the requests (429 and Retry-After). */
function loginFailure(error) {
  if (error.status === 429) {
    const wait = waitText(error.retryAfter);
    return wait ? `${error.detail} Podrás intentarlo de nuevo en ${wait}.` : error.detail;
  }
  return error.detail;
}

function setupAccount() {
  const loginForm = $('#login-form');
  const loginStatus = $('#login-status');
  loginForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = loginForm.querySelector('button[type=submit]');
    const email = loginForm.elements.namedItem('email').value.trim();
    button.disabled = true;
    setStatus(loginStatus, 'Entrando…', 'info');
    try {
      await logIn(email, loginForm.elements.namedItem('password').value);
      loginForm.reset();
      setStatus(loginStatus, '');
      toast(`Sesión iniciada como ${email}.`);
      afterLogIn('#/galeria');
    } catch (error) {
      setStatus(loginStatus, loginFailure(error), 'error');
    } finally {
      button.disabled = false;
    }
  });

  const signupForm = $('#signup-form');
  const signupStatus = $('#signup-status');
  for (const input of signupForm.querySelectorAll('input')) {
    const ids = [input.getAttribute('aria-describedby'), `su-${input.name}-error`].filter(Boolean);
    input.setAttribute('aria-describedby', ids.join(' '));
  }
  signupForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(signupForm);
    const body = {};
    for (const name of ['first_name', 'last_name', 'email', 'password1', 'password2', 'city', 'country']) {
      body[name] = signupForm.elements.namedItem(name).value;
    }
    body.email = body.email.trim();
    const button = signupForm.querySelector('button[type=submit]');
    button.disabled = true;
    setStatus(signupStatus, 'Creando tu cuenta…', 'info');
    try {
      const answer = await api('/api/auth/signup', { method: 'POST', body });
      const created = answer?.message || 'Usuario creado exitosamente.';
      const sent = mailSentText(body.email);
      setStatus(signupStatus, `${created} ${sent}`, 'success');
      try {
        await logIn(body.email, body.password1);
      } catch (error) {
        setStatus(signupStatus, `${created} ${sent} ${loginFailure(error)}`, 'error');
        return;
      }
      session.mailSent = true;
      if (session.verified === null) session.verified = false;
      saveSession();
      renderVerification();
      signupForm.reset();
      setStatus(signupStatus, '');
      toast(`${created} ${sent}`);
      afterLogIn('#/mis-videos');
    } catch (error) {
      setStatus(signupStatus, error.detail, 'error');
      let first = null;
      for (const { field, message } of error.errors) {
        const input = signupForm.elements.namedItem(field);
        const slot = $(`#su-${field}-error`);
        if (!input || !slot) continue;
        input.setAttribute('aria-invalid', 'true');
        // The field is already named by its label: "Ciudad: el campo es obligatorio." -> "El campo es obligatorio."
        let text = message.replace(/^[^:.]{1,40}: /, '');
        text = text.charAt(0).toUpperCase() + text.slice(1);
        slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
        first ??= input;
      }
      first?.focus();
    } finally {
      button.disabled = false;
    }
  });

  const logOut = () => {
    if (uploadXhr && !window.confirm('Hay un envío en curso. ¿Cerrar sesión y cancelarlo?')) return;
    endSession();
    toast('Sesión cerrada.');
    go('#/galeria');
  };
  $('#logout').addEventListener('click', logOut);
  $('#account-logout').addEventListener('click', logOut);
}

// ---------------------------------------------------------------- verified addresses

const mailSentText = (email) => `Te enviamos un correo a ${email} con un enlace para verificar tu dirección.`;

/** Whether the token's address is verified (GET /api/auth/me); null when it cannot be known in time. */
async function fetchVerified(token, timeoutMs = 0) {
  const controller = new AbortController();
  const timer = timeoutMs ? setTimeout(() => controller.abort(), timeoutMs) : null;
  try {
    const me = await api('/api/auth/me', { auth: true, token, keepSession: true, signal: controller.signal });
    return typeof me?.email_verified === 'boolean' ? me.email_verified : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** Asks again whether the address is verified; quietly keeps what was known when it cannot. */
async function refreshAccount(timeoutMs = 0) {
  if (!signedIn()) return;
  const { token } = session;
  const verified = await fetchVerified(token, timeoutMs);
  if (verified === null || session.token !== token) return;
  session.verified = verified;
  if (verified) session.mailSent = false;
  saveSession();
  renderVerification();
}

/** The notice above the views and the line in «Tu cuenta», from what is known of the address. */
function renderVerification() {
  const inside = signedIn();
  const unverified = inside && session.verified === false;
  const notice = $('#verify-notice');
  const show = unverified && currentView !== 'verificar';
  if (!show) setStatus($('#verify-notice-status'), '');
  notice.hidden = !show;
  if (show) {
    const email = h('strong', { text: session.email });
    $('#verify-notice-text').replaceChildren(...(session.mailSent
      ? ['Te enviamos un correo a ', email, ' con un enlace para verificar tu dirección. Ábrelo para poder votar.']
      : ['Tu dirección ', email, ' aún no está verificada. Abre el enlace que te enviamos para poder votar.']));
  }
  const line = $('#account-verified');
  line.hidden = !inside || session.verified === null;
  setStatus(line, session.verified ? 'Correo verificado.' : 'Correo sin verificar: revisa tu bandeja de entrada.',
    session.verified ? 'success' : 'info');
}

/** A «Reenviar correo» button: POST /api/auth/resend-verification, its answer written to `status`. */
function resendButton(status, className = 'btn btn-small') {
  const button = h('button', { class: className, type: 'button', 'aria-label': 'Reenviar correo de verificación' }, 'Reenviar correo');
  button.addEventListener('click', () => resend(button, status));
  return button;
}

async function resend(button, status) {
  if (!session.token) { setStatus(status, 'Inicia sesión para pedir un nuevo enlace.', 'info'); return; }
  if (!signedIn()) { sessionLost(); return; }
  button.disabled = true;
  setStatus(status, 'Enviando un nuevo enlace…', 'info');
  try {
    const answer = await api('/api/auth/resend-verification', { method: 'POST', auth: true });
    setStatus(status, answer?.message || 'Te enviamos un nuevo enlace de verificación. Revisa tu correo.', 'success');
    // "Tu correo ya está verificado." also comes as a 202: ask which it was
    refreshAccount();
  } catch (error) {
    if (error.status === 401) return;
    setStatus(status, loginFailure(error), 'error');
  } finally {
    button.disabled = false;
  }
}

/** token -> Promise<{ ok, text, retry }>: a link is used once, so a view shown again does not send it again. */
const verifications = new Map();
let verifySeq = 0;

async function verifyToken(token) {
  try {
    const answer = await api('/api/auth/verify-email', { method: 'POST', body: { token } });
    return { ok: true, text: answer?.message || 'Correo verificado.' };
  } catch (error) {
    // a lost connection or a server in trouble: the link may still be good, let it be tried again
    const retry = error.status === 0 || error.status >= 500;
    if (retry) verifications.delete(token);
    return { ok: false, text: error.detail, retry };
  }
}

async function showVerify(params) {
  const seq = ++verifySeq;
  const token = (params.get('token') || '').trim();
  const status = $('#verify-status');
  const help = $('#verify-help');
  const actions = $('#verify-actions');
  const resendStatus = $('#verify-resend-status');
  help.textContent = '';
  actions.replaceChildren();
  setStatus(resendStatus, '');
  $('#verify-panel').dataset.state = 'pending';
  let result;
  if (!/^[0-9A-Za-z_-]{16,256}$/.test(token)) {
    result = { ok: false, text: 'El enlace de verificación no es válido.' };
  } else {
    setStatus(status, 'Verificando tu correo…', 'info');
    if (!verifications.has(token)) verifications.set(token, verifyToken(token));
    result = await verifications.get(token);
    if (seq !== verifySeq || currentView !== 'verificar') return;
    if (result.ok) await refreshAccount(2500); // maybe the signed-in person's own address
    if (seq !== verifySeq || currentView !== 'verificar') return;
  }
  $('#verify-panel').dataset.state = result.ok ? 'ok' : 'error';
  setStatus(status, result.text, result.ok ? 'success' : 'error');
  const inside = signedIn();
  if (result.ok) {
    help.textContent = 'Ya puedes votar por tus jugadores favoritos.';
    actions.append(inside
      ? h('a', { class: 'btn btn-primary', href: '#/galeria' }, 'Ir a la galería')
      : h('a', { class: 'btn btn-primary', href: '#/cuenta' }, 'Iniciar sesión'));
    if (!inside) actions.append(h('a', { class: 'btn', href: '#/galeria' }, 'Ver la galería'));
    return;
  }
  if (result.retry) {
    actions.append(h('button', { class: 'btn btn-primary', type: 'button', onclick: () => showVerify(params) }, 'Reintentar'));
  }
  if (inside && session.verified === false) {
    help.textContent = `Pide un nuevo enlace: te lo enviamos a ${session.email}.`;
    actions.append(resendButton(resendStatus, result.retry ? 'btn' : 'btn btn-primary'));
  } else if (inside && session.verified) {
    help.textContent = 'Tu correo ya está verificado: puedes votar.';
  } else if (!inside) {
    help.textContent = 'Inicia sesión para pedir un nuevo enlace, o para votar si tu correo ya está verificado.';
  }
  // one primary action: retry, else a new link, else onward
  const primary = actions.childElementCount === 0 ? 'btn btn-primary' : 'btn';
  actions.append(inside
    ? h('a', { class: primary, href: '#/galeria' }, 'Ir a la galería')
    : h('a', { class: primary, href: '#/cuenta' }, 'Iniciar sesión'));
}

// ---------------------------------------------------------------- my videos

/** video_id -> { li, data, refs } */
const myCards = new Map();
/** video_id -> { controller, transport } */
const watchers = new Map();
let openStreams = 0;
let streamsUnavailable = false;
let mySeq = 0;

function showMyVideos() {
  const inside = signedIn();
  $('#videos-signed-out').hidden = inside;
  $('#videos-signed-in').hidden = !inside;
  if (inside) loadMyVideos();
}

async function loadMyVideos() {
  const seq = ++mySeq;
  const status = $('#my-status');
  if (myCards.size === 0) setStatus(status, 'Cargando tus videos…', 'info');
  let list;
  try {
    list = await api('/api/videos', { auth: true });
  } catch (error) {
    if (seq === mySeq && error.status !== 401) setStatus(status, error.detail, 'error');
    return;
  }
  if (seq !== mySeq || !signedIn()) return;
  const ids = new Set(list.map((v) => v.video_id));
  session.own = new Set(ids);
  for (const [id, card] of myCards) {
    if (!ids.has(id)) { releaseVideos(card.li); card.li.remove(); myCards.delete(id); stopWatcher(id); }
  }
  const ul = $('#my-list');
  list.forEach((item, index) => {
    let card = myCards.get(item.video_id);
    if (!card) {
      card = myCard(item);
      myCards.set(item.video_id, card);
    }
    updateMyCard(card, item, false);
    if (ul.children[index] !== card.li) ul.insertBefore(card.li, ul.children[index] || null);
    if (!FINAL.has(item.status)) watch(item.video_id);
    else if (item.status === 'failed' && card.data.failure_reason === undefined) fetchFailure(item.video_id);
  });
  setStatus(status, list.length ? '' : 'Aún no has subido videos. Sube el primero con el formulario.', list.length ? '' : 'empty');
}

async function fetchFailure(id) {
  try {
    const detail = await api(`/api/videos/${id}`, { auth: true });
    const card = myCards.get(id);
    if (card) updateMyCard(card, detail, false);
  } catch { /* the list still shows the status */ }
}

function myCard(item) {
  const refs = {};
  refs.media = h('div', { class: 'media media-pending' });
  refs.badge = h('span', { class: 'badge' });
  refs.bar = progressBar(`Procesamiento de «${item.title}»`);
  refs.barText = h('span', { class: 'progress-text' });
  refs.progress = h('div', { class: 'card-progress' }, refs.bar, refs.barText);
  refs.failure = h('p', { class: 'failure', hidden: true });
  refs.message = h('p', { class: 'card-msg', role: 'status' });
  refs.delete = h('button', { class: 'btn btn-small btn-danger', type: 'button', 'aria-label': `Eliminar «${item.title}»` }, 'Eliminar');
  refs.title = h('h3', { class: 'card-title', text: item.title, title: item.title });
  refs.time = h('time', { datetime: item.uploaded_at, text: formatDate(item.uploaded_at) });
  const li = h('li', { class: 'my-card', dataset: { videoId: item.video_id } },
    refs.media,
    h('div', { class: 'card-body' },
      refs.title,
      h('p', { class: 'meta-plain' }, 'Subido el ', refs.time),
      h('div', { class: 'status-row' }, refs.badge, refs.delete),
      refs.progress,
      refs.failure,
      refs.message));
  const card = { li, refs, data: { ...item } };
  refs.delete.addEventListener('click', () => deleteVideo(card));
  return card;
}

function updateMyCard(card, detail, announce = true) {
  const before = card.data.status;
  card.data = { ...card.data, ...detail };
  // A list item never has `progress`; a detail object has it only while processing.
  if (!('progress' in detail) && (detail.status !== 'processing' || 'original_url' in detail)) delete card.data.progress;
  const { status, title } = card.data;
  const { refs, li } = card;
  li.dataset.status = status;
  refs.title.textContent = title;
  refs.title.title = title;
  refs.badge.className = `badge badge-${status}`;
  refs.badge.textContent = STATUS_TEXT[status] || status;
  refs.delete.hidden = status === 'processed';
  refs.progress.hidden = FINAL.has(status);
  if (status === 'processing') {
    const p = typeof card.data.progress === 'number' ? card.data.progress : null;
    setProgress(refs.bar, p);
    refs.barText.textContent = p === null ? 'Procesando…' : `Procesando: ${Math.round(p)} %`;
  } else if (status === 'uploaded') {
    setProgress(refs.bar, null);
    refs.barText.textContent = 'En cola para procesar…';
  }
  refs.failure.hidden = status !== 'failed';
  if (status === 'failed') {
    refs.failure.textContent = card.data.failure_reason
      ? `Motivo: ${card.data.failure_reason}` : 'No se pudo procesar el video.';
  }
  if (status === 'processed' && card.data.processed_url) {
    const current = refs.media.querySelector('video');
    // Signed links change on every listing: keep a working player (it may be playing).
    if (!current || current.dataset.failed) {
      releaseVideos(refs.media);
      const video = lazyVideo(card.data.processed_url, `Video «${title}»`, () => {
        setStatus(refs.message, 'No se pudo cargar el video: el enlace pudo expirar. Pulsa «Actualizar».', 'error');
      });
      refs.media.className = 'media';
      refs.media.replaceChildren(video);
    }
  } else if (!refs.media.querySelector('.pending-label')) {
    refs.media.className = 'media media-pending';
    refs.media.replaceChildren(h('span', { class: 'pending-label', 'aria-hidden': 'true' }));
  }
  const label = refs.media.querySelector('.pending-label');
  if (label) label.textContent = status === 'failed' ? 'Sin video' : 'Procesando tu video';
  if (announce && before !== status) {
    if (status === 'processed') toast(`«${title}» ya está publicado en la galería.`);
    else if (status === 'failed') toast(`No se pudo procesar «${title}».`);
  }
}

async function deleteVideo(card) {
  const { video_id: id, title } = card.data;
  if (!window.confirm(`¿Eliminar «${title}»? Esta acción no se puede deshacer.`)) return;
  card.refs.delete.disabled = true;
  setStatus(card.refs.message, 'Eliminando…', 'info');
  try {
    const answer = await api(`/api/videos/${id}`, { method: 'DELETE', auth: true });
    stopWatcher(id);
    card.li.remove();
    myCards.delete(id);
    toast(answer?.message || 'Video eliminado.');
    if (myCards.size === 0) setStatus($('#my-status'), 'Aún no has subido videos. Sube el primero con el formulario.', 'empty');
  } catch (error) {
    if (error.status === 401) return;
    setStatus(card.refs.message, error.detail, 'error');
    card.refs.delete.disabled = false;
    if (error.status === 404) { stopWatcher(id); card.li.remove(); myCards.delete(id); }
    else if (error.status === 400) fetchFailure(id); // maybe processed meanwhile: show it
  }
}

// Live status: the server's event stream, read with fetch (EventSource cannot
// send the bearer token); polling every 2 s when the stream is missing or breaks.

function watch(id) {
  if (watchers.has(id)) return;
  const watcher = { controller: new AbortController(), transport: '' };
  watchers.set(id, watcher);
  (async () => {
    const { signal } = watcher.controller;
    let outcome = 'fallback';
    if (!streamsUnavailable && openStreams < MAX_STREAMS) {
      openStreams += 1;
      try { outcome = await streamEvents(id, watcher); } finally { openStreams -= 1; }
    }
    if (outcome === 'fallback' && !signal.aborted) await poll(id, watcher);
  })().finally(() => {
    if (watchers.get(id) === watcher) watchers.delete(id);
  });
}

function stopWatcher(id) {
  watchers.get(id)?.controller.abort();
  watchers.delete(id);
}

function stopAllWatchers() {
  for (const id of [...watchers.keys()]) stopWatcher(id);
}

function setTransport(id, watcher, transport) {
  watcher.transport = transport;
  const card = myCards.get(id);
  if (card) card.li.dataset.transport = transport;
}

/** Applies one detail object; true when the video reached a final status. */
function applyDetail(id, detail) {
  const card = myCards.get(id);
  if (card && detail && typeof detail === 'object' && detail.status) updateMyCard(card, detail);
  return FINAL.has(detail?.status);
}

/** 'final' | 'fallback' | 'stop' */
async function streamEvents(id, watcher) {
  const { signal } = watcher.controller;
  let response;
  try {
    response = await fetch(`/api/videos/${id}/events`, {
      headers: { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal,
    });
  } catch {
    return signal.aborted ? 'stop' : 'fallback';
  }
  const type = response.headers.get('content-type') || '';
  if (response.status === 401) { sessionLost(); return 'stop'; }
  if (!response.ok || !type.includes('text/event-stream') || !response.body) {
    response.body?.cancel().catch(() => {});
    if (response.status === 404) watcher.eventsMissing = true;
    return 'fallback';
  }
  setTransport(id, watcher, 'sse');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let heldCR = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let chunk = heldCR + value;
      heldCR = '';
      if (chunk.endsWith('\r')) { heldCR = '\r'; chunk = chunk.slice(0, -1); }
      buffer += chunk.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        }
        if (data.length === 0) continue; // a comment (keep-alive), or id/retry only
        let detail;
        try { detail = JSON.parse(data.join('\n')); } catch { continue; }
        if (applyDetail(id, detail)) {
          reader.cancel().catch(() => {});
          return 'final';
        }
      }
    }
  } catch {
    if (signal.aborted) return 'stop';
  }
  return signal.aborted ? 'stop' : 'fallback';
}

async function poll(id, watcher) {
  const { signal } = watcher.controller;
  setTransport(id, watcher, 'polling');
  let failures = 0;
  while (!signal.aborted) {
    try {
      const detail = await api(`/api/videos/${id}`, { auth: true, signal });
      failures = 0;
      if (watcher.eventsMissing) streamsUnavailable = true; // the video exists: the server has no stream
      if (applyDetail(id, detail)) return;
    } catch (error) {
      if (signal.aborted || error.status === 401) return;
      if (error.status === 404 || error.status === 403) {
        const card = myCards.get(id);
        if (card) { card.li.remove(); myCards.delete(id); }
        return;
      }
      failures += 1;
    }
    await sleep(POLL_MS * Math.min(2 ** Math.max(0, failures - 1), 8), signal);
  }
}

// ---------------------------------------------------------------- upload

let uploadXhr = null;
let fileCheck = { file: null, problems: [], blocking: false, done: Promise.resolve() };
let checkSeq = 0;

/** Reads a file's duration and frame size in the browser; null when it cannot. */
function readMetadata(file) {
  return new Promise((resolve) => {
    const video = document.createElement('video');
    const url = URL.createObjectURL(file);
    let timer;
    const done = (result) => {
      clearTimeout(timer);
      video.removeAttribute('src');
      video.load();
      URL.revokeObjectURL(url);
      resolve(result);
    };
    timer = setTimeout(() => done(null), 15000);
    video.preload = 'metadata';
    video.muted = true;
    video.addEventListener('loadedmetadata', () => {
      const { duration, videoWidth: width, videoHeight: height } = video;
      done(Number.isFinite(duration) && duration > 0 && width > 0 && height > 0 ? { duration, width, height } : null);
    }, { once: true });
    video.addEventListener('error', () => done(null), { once: true });
    video.src = url;
  });
}

function checkFile(file) {
  const seq = ++checkSeq;
  $('#upload-file-name').textContent = file ? file.name : 'Ningún archivo elegido';
  const out = $('#upload-file-check');
  const override = $('#upload-override');
  override.hidden = true;
  $('#upload-override-box').checked = false;
  out.className = 'file-check';
  if (!file) {
    out.replaceChildren();
    fileCheck = { file: null, problems: [], blocking: false, done: Promise.resolve() };
    return;
  }
  const problems = [];
  let blocking = false;
  const typeOk = ['video/mp4', 'video/quicktime'].includes(file.type) || /\.(mp4|m4v|mov)$/i.test(file.name);
  if (!typeOk) problems.push('El archivo no parece un video MP4 o MOV.');
  if (file.size > MAX_BYTES) {
    problems.push(`El archivo pesa ${megabytes(file.size)} MB y supera el máximo permitido (${MAX_MEGABYTES} MB).`);
    blocking = true;
  }
  out.replaceChildren(h('span', { text: `${file.name} · ${megabytes(file.size)} MB · comprobando…` }));
  const check = { file, problems, blocking, done: null };
  fileCheck = check;
  check.done = (async () => {
    const meta = blocking ? null : await readMetadata(file);
    if (seq !== checkSeq) return;
    const parts = [file.name, `${megabytes(file.size)} MB`];
    if (meta) {
      parts.push(`${meta.duration.toFixed(1)} s`, `${meta.width}×${meta.height}`);
      if (meta.duration < MIN_SECONDS || meta.duration > MAX_SECONDS) {
        problems.push(`Duración ${meta.duration.toFixed(1)} s fuera del rango permitido (${MIN_SECONDS}–${MAX_SECONDS} s).`);
      }
      if (Math.min(meta.width, meta.height) < MIN_SHORT_SIDE) {
        problems.push(`Resolución ${meta.width}x${meta.height} insuficiente: el lado menor debe tener al menos ${MIN_SHORT_SIDE} píxeles.`);
      }
    }
    const lines = [h('span', { class: 'file-facts', text: parts.join(' · ') })];
    if (problems.length) {
      out.className = 'file-check is-error';
      lines.push(h('ul', {}, problems.map((p) => h('li', { text: p }))));
      if (!blocking) {
        lines.push(h('span', { text: 'Si crees que el navegador se equivoca, puedes enviarlo de todos modos.' }));
        override.hidden = false;
      }
    } else if (meta) {
      out.className = 'file-check is-success';
      lines.push(h('span', { text: 'Cumple las reglas de duración y resolución.' }));
    } else {
      out.className = 'file-check is-info';
      lines.push(h('span', { text: 'El navegador no puede leer la duración ni la resolución de este archivo; el servidor lo comprobará al recibirlo.' }));
    }
    out.replaceChildren(...lines);
  })();
}

function setUploading(on) {
  const form = $('#upload-form');
  for (const el of form.querySelectorAll('input, #upload-submit')) el.disabled = on;
  $('#upload-cancel').hidden = !on;
  form.setAttribute('aria-busy', on ? 'true' : 'false');
}

function setupUpload() {
  const form = $('#upload-form');
  const fileInput = $('#upload-file');
  const status = $('#upload-status');
  const transfer = $('#upload-transfer');
  const bar = $('#upload-progress');
  const barText = $('#upload-progress-text');

  fileInput.addEventListener('change', () => checkFile(fileInput.files[0]));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (uploadXhr) return;
    if (!signedIn()) { sessionLost(); return; }
    const titleInput = form.elements.namedItem('title');
    const title = titleInput.value;
    const file = fileInput.files[0];
    if (!title.trim()) {
      setStatus(status, 'El título es obligatorio.', 'error');
      titleInput.focus();
      return;
    }
    if (!file) {
      setStatus(status, 'Elige un archivo de video.', 'error');
      fileInput.focus();
      return;
    }
    if (fileCheck.file !== file) checkFile(file);
    await fileCheck.done;
    if (fileCheck.blocking) {
      setStatus(status, fileCheck.problems.join(' '), 'error');
      fileInput.focus();
      return;
    }
    if (fileCheck.problems.length && !$('#upload-override-box').checked) {
      setStatus(status, 'El video no cumple las reglas. Elige otro archivo o marca «Enviar de todos modos».', 'error');
      $('#upload-override-box').focus();
      return;
    }
    send(title, file);
  });

  $('#upload-cancel').addEventListener('click', () => uploadXhr?.abort());

  window.addEventListener('beforeunload', (event) => {
    if (uploadXhr) event.preventDefault();
  });

  function finish() {
    uploadXhr = null;
    setUploading(false);
  }

  function send(title, file) {
    const body = new FormData();
    body.append('title', title);
    body.append('video_file', file, file.name);
    const xhr = new XMLHttpRequest();
    uploadXhr = xhr;
    setUploading(true);
    transfer.hidden = false;
    setProgress(bar, 0);
    barText.textContent = `Enviando: 0 % (0.0 de ${megabytes(file.size)} MB)`;
    setStatus(status, 'Enviando el video…', 'info');
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) { setProgress(bar, null); return; }
      const percent = (e.loaded / e.total) * 100;
      setProgress(bar, percent);
      barText.textContent = `Enviando: ${Math.floor(percent)} % (${megabytes(Math.min(e.loaded, file.size))} de ${megabytes(file.size)} MB)`;
    });
    xhr.upload.addEventListener('load', () => {
      setProgress(bar, 100);
      barText.textContent = 'Archivo enviado. El servidor está comprobando el video…';
    });
    xhr.addEventListener('load', () => {
      finish();
      if (xhr.status === 201) {
        let message = 'Video subido correctamente.';
        try { message = JSON.parse(xhr.responseText).message || message; } catch { /* keep the default */ }
        setStatus(status, message, 'success');
        transfer.hidden = true;
        form.reset();
        checkFile(null);
        loadMyVideos().then(() => {
          // on a phone the list is below the form: bring the new video's progress into view
          const first = $('#my-list .my-card');
          if (first && first.getBoundingClientRect().top > window.innerHeight) first.scrollIntoView({ block: 'nearest' });
        });
        return;
      }
      const problem = problemFrom(xhr.status, xhr.responseText, (name) => xhr.getResponseHeader(name));
      transfer.hidden = true;
      if (xhr.status === 401) { sessionLost(); return; }
      setStatus(status, problem.detail, 'error');
    });
    xhr.addEventListener('error', () => {
      finish();
      transfer.hidden = true;
      setStatus(status, 'No se pudo completar el envío: se perdió la conexión con el servidor.', 'error');
    });
    xhr.addEventListener('abort', () => {
      finish();
      transfer.hidden = true;
      setStatus(status, 'Envío cancelado.', 'info');
    });
    xhr.open('POST', '/api/videos/upload');
    xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.send(body);
  }
}

// ---------------------------------------------------------------- start

function setupFilters() {
  for (const [formId, view] of [['#gallery-filter', 'galeria'], ['#ranking-filter', 'ranking']]) {
    $(formId).addEventListener('submit', (event) => {
      event.preventDefault();
      go(listHash(view, event.target.elements.namedItem('city').value.trim(), 1), { focus: false });
    });
  }
}

/** The upload rules in the page, from the constants the checks use. */
function showUploadRules() {
  const text = {
    duration: `${MIN_SECONDS} y ${MAX_SECONDS} segundos`,
    resolution: `${MIN_SHORT_SIDE}p`,
    'short-side': String(MIN_SHORT_SIDE),
    examples: `${Math.round(MIN_SHORT_SIDE * 16 / 9)}×${MIN_SHORT_SIDE} o ${MIN_SHORT_SIDE}×${Math.round(MIN_SHORT_SIDE * 16 / 9)}`,
    size: `${MAX_MEGABYTES} MB`,
  };
  for (const el of document.querySelectorAll('[data-rule]')) el.textContent = text[el.dataset.rule];
}

function start() {
  showUploadRules();
  if (session.token && !signedIn()) endSession();
  scheduleExpiry();
  renderSession();
  setupFilters();
  setupAccount();
  setupUpload();
  $('#my-refresh').addEventListener('click', () => loadMyVideos());
  const noticeResend = resendButton($('#verify-notice-status'));
  $('#verify-notice-actions').append(noticeResend);
  // back from the mail app, where the link may have been opened in another tab
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && signedIn() && session.verified === false) refreshAccount();
  });
  $('.skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    $('#main').focus();
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#/') || location.hash === '') render(focusOnRoute);
    focusOnRoute = true;
  });
  render(false);
  refreshAccount();
}

start();
