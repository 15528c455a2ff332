// Development aid: serves bin/web/static/ at / and forwards everything else to
// a running anb-web, so the page can be tried before the server embeds it.
//
//   ANB_UPSTREAM=http://127.0.0.1:18080 ANB_PROXY_ADDR=127.0.0.1:18090 node dev-proxy.mjs
//
// ANB_DEV_FAKE_EVENTS=1 also answers GET /api/videos/{id}/events itself (a
// Server-Sent Events stream made by polling the upstream detail every 0.5 s,
// with a made-up `progress` while processing), for servers without the stream.

import http from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../bin/web/static');
const upstream = new URL(process.env.ANB_UPSTREAM || 'http://127.0.0.1:18080');
const [host, port] = (process.env.ANB_PROXY_ADDR || '127.0.0.1:18090').split(':');
const fakeEvents = process.env.ANB_DEV_FAKE_EVENTS === '1';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

async function serveStatic(req, res) {
  const { pathname } = new URL(req.url, 'http://x');
  const name = pathname === '/' ? 'index.html' : decodeURIComponent(pathname.slice(1));
  if (name.includes('/') || name.startsWith('.')) return false;
  const file = path.join(root, name);
  try {
    if (!(await stat(file)).isFile()) return false;
  } catch {
    return false;
  }
  const body = await readFile(file);
  res.writeHead(200, {
    'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
    'content-length': body.length,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}

function forward(req, res) {
  const options = {
    hostname: upstream.hostname,
    port: upstream.port,
    method: req.method,
    path: req.url,
    headers: { ...req.headers, host: upstream.host },
  };
  const out = http.request(options, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  out.on('error', (error) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Bad Gateway', status: 502, detail: `dev-proxy: ${error.message}` }));
    } else {
      res.destroy();
    }
  });
  req.pipe(out);
}

function getJson(url, headers) {
  return new Promise((resolve, reject) => {
    http.get(new URL(url, upstream), { headers }, (answer) => {
      let text = '';
      answer.setEncoding('utf8');
      answer.on('data', (c) => { text += c; });
      answer.on('end', () => resolve({ status: answer.statusCode, headers: answer.headers, text }));
    }).on('error', reject);
  });
}

async function events(req, res, id) {
  const headers = { authorization: req.headers.authorization || '' };
  const first = await getJson(`/api/videos/${id}`, headers);
  if (first.status !== 200) {
    res.writeHead(first.status, { 'content-type': first.headers['content-type'] || 'application/problem+json' });
    res.end(first.text);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  let last = '';
  let processingSince = 0;
  let closed = false;
  req.on('close', () => { closed = true; });
  let answer = first;
  for (;;) {
    if (closed) return;
    if (answer.status !== 200) { res.end(); return; }
    const detail = JSON.parse(answer.text);
    if (detail.status === 'processing') {
      processingSince ||= Date.now();
      detail.progress = Math.min(99, Math.floor((Date.now() - processingSince) / 300));
    }
    const text = JSON.stringify(detail);
    if (text !== last) {
      last = text;
      res.write(`event: status\ndata: ${text}\n\n`);
    } else {
      res.write(': keep-alive\n\n');
    }
    if (detail.status === 'processed' || detail.status === 'failed') { res.end(); return; }
    await new Promise((r) => setTimeout(r, 500));
    answer = await getJson(`/api/videos/${id}`, headers).catch(() => ({ status: 502 }));
  }
}

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url, 'http://x');
    const m = pathname.match(/^\/api\/videos\/(\d+)\/events$/);
    if (fakeEvents && m && req.method === 'GET') return void (await events(req, res, m[1]));
    if (!pathname.startsWith('/api/') && !pathname.startsWith('/files/') && !pathname.startsWith('/docs')
        && (req.method === 'GET' || req.method === 'HEAD') && (await serveStatic(req, res))) return;
    forward(req, res);
  } catch (error) {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(error));
  }
});

server.listen(Number(port), host, () => {
  console.log(`dev-proxy: http://${host}:${port}/ -> static ${root}, rest -> ${upstream.origin}${fakeEvents ? ' (fake /events)' : ''}`);
});
