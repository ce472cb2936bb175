// --cors-origin with a real browser: Debian's chromium, headless, loads a page from one
// 127.0.0.1 origin whose script uploads a file to annex-proxy (another origin) with fetch(),
// credentials included, and reads it back whole and as a range. Without --cors-origin the
// same page is refused by the browser and nothing is stored.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { request } from 'undici'
import { type After, defer, makeRepo, repoUuid, sha256Key, startAnnexProxy, tempDir } from '../helpers/annex.js'

const SIZE = 200_003
const USER = 'alice'
const PASSWORD = 'pw-for-the-browser'
const AUTH_ENV = { [`GIT_ANNEX_P2PHTTP_PASSWORD_${USER}`]: PASSWORD }
const REPORT_DEADLINE_MS = 90_000

interface Report {
  error?: string
  put?: { status: number; body: string }
  get?: { status: number; dataLength: string | null; b64: string }
  range?: { status: number; contentRange: string | null; b64: string }
  anon?: { status: number }
}

/** The page's script: every step's outcome goes back to the page's own origin as one report. */
function page(server: string, uuid: string, key: string, data: Buffer): string {
  return `<!doctype html><meta charset="utf-8"><title>upload</title><script>
const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 8192) s += String.fromCharCode(...u8.subarray(i, i + 8192)); return btoa(s) }
;(async () => {
  const out = {}
  try {
    const data = Uint8Array.from(atob(${JSON.stringify(data.toString('base64'))}), (c) => c.charCodeAt(0))
    const base = ${JSON.stringify(`${server}/git-annex/${uuid}`)}
    const key = ${JSON.stringify(key)}
    const auth = { authorization: 'Basic ' + btoa(${JSON.stringify(`${USER}:${PASSWORD}`)}) }
    const cu = crypto.randomUUID()
    const put = await fetch(base + '/v4/put?key=' + encodeURIComponent(key) + '&clientuuid=' + cu, {
      method: 'POST', credentials: 'include',
      headers: { ...auth, 'content-type': 'application/octet-stream', 'x-git-annex-data-length': String(data.length) },
      body: data,
    })
    out.put = { status: put.status, body: await put.text() }
    const got = await fetch(base + '/v4/key/' + encodeURIComponent(key) + '?clientuuid=' + cu, { credentials: 'include', headers: auth })
    out.get = { status: got.status, dataLength: got.headers.get('x-git-annex-data-length'), b64: b64(new Uint8Array(await got.arrayBuffer())) }
    const part = await fetch(base + '/key/' + encodeURIComponent(key), { credentials: 'include', headers: { ...auth, range: 'bytes=1000-1999' } })
    out.range = { status: part.status, contentRange: part.headers.get('content-range'), b64: b64(new Uint8Array(await part.arrayBuffer())) }
    const anon = await fetch(base + '/v4/checkpresent?key=' + encodeURIComponent(key) + '&clientuuid=' + cu, { method: 'POST' })
    out.anon = { status: anon.status }
  } catch (e) {
    out.error = String(e)
  }
  await fetch('/report', { method: 'POST', body: JSON.stringify(out) })
})()
</script>`
}

/** Serves `html` on its own 127.0.0.1 origin and resolves with what the page reports. */
async function pageOrigin(t: After): Promise<{ origin: string; serve(html: string): Promise<Report> }> {
  let html = ''
  let onReport: ((r: Report) => void) | undefined
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST' && req.url === '/report') {
      let body = ''
      req.setEncoding('utf8').on('data', (d: string) => (body += d))
      req.on('end', () => {
        res.end('ok')
        onReport?.(JSON.parse(body) as Report)
      })
      return
    }
    if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(html)
    else res.writeHead(404).end()
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise((r) => srv.close(r)))
  const origin = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
  return {
    origin,
    async serve(h: string) {
      html = h
      const report = new Promise<Report>((r) => (onReport = r))
      const browser = await startChromium(t, `${origin}/`)
      let timer: NodeJS.Timeout | undefined
      try {
        return await Promise.race([
          report,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no report from the page within ${REPORT_DEADLINE_MS} ms; chromium said: ${browser.output().slice(-2000)}`)), REPORT_DEADLINE_MS)
          }),
        ])
      } finally {
        clearTimeout(timer)
        await browser.stop()
      }
    },
  }
}

async function startChromium(t: After, url: string): Promise<{ output(): string; stop(): Promise<void> }> {
  const profile = await tempDir(t, 'annex-proxy-chromium-')
  // Its own process group, so the renderer and helper processes end with it.
  const child: ChildProcess = spawn(
    'chromium',
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--disable-background-networking', '--disable-sync', `--user-data-dir=${profile}`, url],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  const keep = (d: Buffer) => (out = (out + d.toString('utf8')).slice(-20_000))
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const closed = new Promise((r) => child.once('close', r))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    await closed
  }
  defer(t, stop)
  return { output: () => out, stop }
}

async function present(port: number, uuid: string, key: string): Promise<Buffer> {
  const res = await request(`http://127.0.0.1:${port}/git-annex/${uuid}/key/${encodeURIComponent(key)}`, {
    headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` },
  })
  return Buffer.from(await res.body.arrayBuffer())
}

test('a page on another origin uploads with fetch() and reads it back with --cors-origin; without it the browser refuses', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(`${dir}/repo`, 'served')
  const uuid = await repoUuid(repo)
  const pages = await pageOrigin(t)

  // Without --cors-origin: the preflight gets no CORS answer, so the upload is never sent.
  const closed = await startAnnexProxy(t, repo, ['--authenv-http'], AUTH_ENV)
  const refusedData = randomBytes(SIZE)
  const refusedKey = sha256Key(refusedData)
  const refused = await pages.serve(page(`http://127.0.0.1:${closed.port}`, uuid, refusedKey, refusedData))
  assert.match(refused.error ?? '', /TypeError: Failed to fetch/, `the browser refused: ${JSON.stringify(refused)}`)
  assert.equal(refused.put, undefined)
  assert.equal((await present(closed.port, uuid, refusedKey)).length, 0, 'nothing stored')
  await closed.stop()

  const open = await startAnnexProxy(t, repo, ['--authenv-http', '--cors-origin', pages.origin, '--cors-origin', 'https://other.example.org'], AUTH_ENV)
  const server = `http://127.0.0.1:${open.port}`

  // Preflights without a browser: an allowed origin is answered, another is not.
  const preflight = (origin: string) =>
    request(`${server}/git-annex/${uuid}/v4/put?key=${refusedKey}&clientuuid=x`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-git-annex-data-length' },
    })
  const ok = await preflight(pages.origin)
  await ok.body.dump()
  assert.equal(ok.statusCode, 204)
  assert.equal(ok.headers['access-control-allow-origin'], pages.origin)
  assert.equal(ok.headers['access-control-allow-credentials'], 'true')
  assert.match(String(ok.headers['access-control-allow-headers']), /x-git-annex-data-length/)
  const foreign = await preflight('http://127.0.0.1:1')
  await foreign.body.dump()
  assert.equal(foreign.headers['access-control-allow-origin'], undefined, 'an origin not configured gets no allowance')

  const data = randomBytes(SIZE)
  const key = sha256Key(data)
  const r = await pages.serve(page(server, uuid, key, data))
  assert.equal(r.error, undefined, `the page's fetches worked: ${JSON.stringify(r).slice(0, 2000)}`)
  assert.equal(r.put?.status, 200, JSON.stringify(r.put))
  assert.equal((JSON.parse(r.put!.body) as { stored: boolean }).stored, true, r.put!.body)
  assert.equal(r.get?.status, 200)
  assert.equal(r.get?.dataLength, String(SIZE), 'X-git-annex-data-length is readable by the page')
  assert.ok(Buffer.from(r.get!.b64, 'base64').equals(data), 'the page read back what it uploaded')
  assert.equal(r.range?.status, 206)
  assert.equal(r.range?.contentRange, `bytes 1000-1999/${SIZE}`)
  assert.ok(Buffer.from(r.range!.b64, 'base64').equals(data.subarray(1000, 2000)), 'the range is the slice')
  assert.equal(r.anon?.status, 401, 'a refusal is readable by the page too')
  assert.ok((await present(open.port, uuid, key)).equals(data), 'stored in the repository')
})
