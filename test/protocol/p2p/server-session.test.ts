// `annex-proxy p2pstdio` against the reference `git-annex-shell p2pstdio` (10.20250416), byte
// for byte: the same scripted client input goes to both, each serving a fresh repository made
// the same way, and what they answer (stdout, after naming the repository's UUID and the
// clock's reading the same), their exit statuses and what the repository records afterwards
// must be equal. Scripts cover every version, every request, the server modes, resume, and
// the paths that end a session. Where annex-proxy answers better than the reference on
// purpose, the test says so and checks our answer alone.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { serializeKey, parseKey } from '../../../src/keys/key.js'
import { annex, defer, git, gitEnv, makeRepo, PROJECT_ROOT, repoUuid, sha256Key, tempDir } from '../../helpers/annex.js'

const CLIENT = '00000000-0000-4000-8000-0000000000c1'
const hello = Buffer.from('hello\n')
const HELLO = sha256Key(hello, '.txt')
const world = Buffer.from('world\n')
const WORLD = sha256Key(world, '.txt')
const ABSENT = sha256Key(Buffer.from('nobody has this\n'), '.txt')

type Impl = 'reference' | 'reference-argv' | 'annex-proxy' | 'front' | 'front-argv'
type Chunk = string | Buffer

interface Ran {
  readonly stdout: string
  readonly stderr: string
  readonly code: number | null
}

const MAIN = join(PROJECT_ROOT, 'dist/src/cli/main.js')
const FRONT = join(PROJECT_ROOT, 'bin/git-annex-shell')

function command(impl: Impl, args: readonly string[]): [string, string[]] {
  switch (impl) {
    case 'reference':
      return ['git-annex-shell', ['p2pstdio', ...args]]
    case 'reference-argv':
      return ['git-annex-shell', [...args]]
    case 'annex-proxy':
      return [process.execPath, [MAIN, 'p2pstdio', ...args]]
    case 'front':
      return [FRONT, ['p2pstdio', ...args]]
    case 'front-argv':
      return [FRONT, [...args]]
  }
}

/** Sends `input` to one session and closes its stdin; resolves with what it answered. */
async function session(t: TestContext, impl: Impl, args: readonly string[], input: readonly Chunk[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  const [cmd, argv] = command(impl, args)
  const child = spawn(cmd, argv, { env: { ...gitEnv, ANNEX_PROXY_NODE: process.execPath, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('latin1').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdin.on('error', () => undefined)
  const closed = once(child, 'close')
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  defer(t, () => {
    clearTimeout(timer)
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  for (const c of input) child.stdin.write(c)
  child.stdin.end()
  const [code] = (await closed) as [number | null]
  clearTimeout(timer)
  assert.notEqual(child.signalCode, 'SIGKILL', `${impl} did not finish within 60 s; it answered:\n${stdout}\n${stderr}`)
  return { stdout, stderr, code }
}

interface Twin {
  readonly dir: string
  readonly uuid: string
}

/** Two repositories made alike, one per implementation. */
async function twins(t: TestContext): Promise<Record<'reference' | 'annex-proxy', Twin>> {
  const root = await tempDir(t)
  const make = async (name: string) => {
    const dir = await makeRepo(join(root, name), name)
    return { dir, uuid: await repoUuid(dir) }
  }
  return { reference: await make('ref'), 'annex-proxy': await make('ours') }
}

/** Answers with the repository UUID and clock readings named, so both can be compared. */
function normalized(r: Ran, uuid: string): string {
  return r.stdout.split(uuid).join('<uuid>').replace(/^TIMESTAMP \d+$/gm, 'TIMESTAMP <n>')
}

/** The same input to both; asserts equal answers and exit statuses and returns ours. */
async function same(t: TestContext, tw: Record<'reference' | 'annex-proxy', Twin>, input: (uuid: string) => readonly Chunk[], opts: { env?: NodeJS.ProcessEnv; impl?: Impl; args?: (tw: Twin) => string[] } = {}): Promise<Ran> {
  const args = opts.args ?? ((w: Twin) => [w.dir, CLIENT, '--uuid', w.uuid])
  const ref = await session(t, 'reference', args(tw.reference), input(tw.reference.uuid), opts.env)
  const ours = await session(t, opts.impl ?? 'annex-proxy', args(tw['annex-proxy']), input(tw['annex-proxy'].uuid), opts.env)
  assert.equal(normalized(ours, tw['annex-proxy'].uuid), normalized(ref, tw.reference.uuid), `answers differ\nreference stderr: ${ref.stderr}\nours stderr: ${ours.stderr}`)
  assert.equal(ours.code, ref.code, `exit status: reference ${ref.code} (${ref.stderr.trim()}), ours ${ours.code} (${ours.stderr.trim()})`)
  return ours
}

const line = (s: string) => `${s}\n`
const data = (b: Buffer) => [line(`DATA ${b.length}`), b]

/** Files in the repository's temp folder, with their sizes. */
async function tmpFiles(dir: string): Promise<string[]> {
  const tmp = join(dir, '.git/annex/tmp')
  const names = await readdir(tmp).catch(() => [])
  return Promise.all(names.sort().map(async (n) => `${n} ${(await stat(join(tmp, n))).size}`))
}

/** Where the repository's git-annex branch (journal committed) says the key is. */
async function presentInBranch(dir: string, key: string): Promise<boolean> {
  const j = await readdir(join(dir, '.git/annex/journal')).catch(() => [])
  assert.deepEqual(j, [], `the journal of ${dir} is committed when the session ends`)
  const r = await git(dir, 'annex', 'readpresentkey', key, await repoUuid(dir)).then(
    () => true,
    () => false,
  )
  return r
}

describe('annex-proxy p2pstdio answers as git-annex-shell p2pstdio does', { timeout: 300_000 }, () => {
  test('v4: put, checkpresent, get whole and from offsets, already-have, lock, remove, remove-before, timestamp, unknown and unexpected messages', async (t) => {
    const tw = await twins(t)
    const ours = await same(t, tw, () => [
      line('VERSION 4'),
      line(`CHECKPRESENT ${HELLO}`),
      line(`PUT a%b.txt ${HELLO}`),
      ...data(hello),
      line('VALID'),
      line(`CHECKPRESENT ${HELLO}`),
      line(`GET 0 a.txt ${HELLO}`),
      line('SUCCESS'),
      line(`GET 3  ${HELLO}`),
      line('SUCCESS'),
      line(`GET 6  ${HELLO}`),
      line('SUCCESS'),
      line(`GET 99  ${HELLO}`),
      line('FAILURE'),
      line(`GET 0  ${ABSENT}`),
      line('FAILURE'),
      line(`PUT a.txt ${HELLO}`),
      line(`LOCKCONTENT ${HELLO}`),
      line('UNLOCKCONTENT'),
      line(`LOCKCONTENT ${ABSENT}`),
      line('GETTIMESTAMP'),
      line(`REMOVE-BEFORE 1 ${HELLO}`),
      line(`CHECKPRESENT ${HELLO}`),
      line('FOO'),
      line('SUCCESS'),
      line('SUCCESS '),
      line('SUCCESS  '),
      line(`UNLOCKCONTENT ${HELLO}`),
      line('DATA-PRESENT'),
      line('PUT-FROM 3'),
      line(`REMOVE ${HELLO}`),
      line(`REMOVE ${HELLO}`),
      line(`CHECKPRESENT ${HELLO}`),
      line('GETTIMESTAMP\r'),
      line('VERSION 9'),
      line('BYPASS 11111111-1111-4111-8111-111111111111 22222222-2222-4222-8222-222222222222'),
      line(`CHECKPRESENT ${HELLO}`),
    ])
    assert.match(ours.stdout, /^DATA 6\nhello\nVALID$/m)
    for (const w of Object.values(tw)) assert.equal(await presentInBranch(w.dir, HELLO), false)
  })

  for (const v of [0, 1, 2, 3] as const) {
    test(`v${v}: put and get speak the version's forms (no VALID at v0)`, async (t) => {
      const tw = await twins(t)
      const validity = v >= 1 ? [line('VALID')] : []
      await same(t, tw, () => [
        line(`VERSION ${v}`),
        line(`PUT  ${HELLO}`),
        ...data(hello),
        ...validity,
        line(`GET 1  ${HELLO}`),
        line('SUCCESS'),
        line(`PUT  ${HELLO}`),
        line(`GET 0  ${ABSENT}`),
        line('FAILURE'),
        line('GETTIMESTAMP'),
        line(`REMOVE ${HELLO}`),
        line(`PUT  ${WORLD}`),
        ...data(world),
        ...validity,
      ])
      for (const w of Object.values(tw)) {
        assert.equal(await presentInBranch(w.dir, HELLO), false)
        assert.equal(await presentInBranch(w.dir, WORLD), true, 'the location log records the upload')
      }
    })
  }

  test('no VERSION at all: the session speaks v0', async (t) => {
    const tw = await twins(t)
    await same(t, tw, () => [line(`PUT  ${HELLO}`), ...data(hello), line(`GET 0  ${HELLO}`), line('SUCCESS'), line('VERSION 2'), line(`GET 0  ${HELLO}`), line('SUCCESS')])
  })

  test('an upload cut off mid-DATA is resumed from the bytes kept; bad content is refused and not kept', async (t) => {
    const tw = await twins(t)
    await same(t, tw, () => [line('VERSION 4'), line(`PUT  ${WORLD}`), line('DATA 6'), world.subarray(0, 3)])
    for (const w of Object.values(tw)) assert.equal((await stat(join(w.dir, '.git/annex/tmp', WORLD))).size, 3)
    const bad = Buffer.from('WORLD\n')
    await same(t, tw, () => [
      line('VERSION 4'),
      line(`PUT  ${WORLD}`),
      line('DATA 3'),
      world.subarray(3),
      line('VALID'),
      line(`PUT  ${HELLO}`),
      ...data(bad),
      line('VALID'),
      line(`PUT  ${HELLO}`),
      line('DATA 0'),
      line('INVALID'),
      line(`PUT  ${HELLO}`),
      line('ERROR giving up'),
      line(`PUT  ${HELLO}`),
      line('BOGUS'),
      line(`PUT  ${HELLO}`),
      line('DATA-PRESENT'),
      line(`PUT  ${WORLD}`),
    ])
    for (const w of Object.values(tw)) assert.equal(await presentInBranch(w.dir, WORLD), true)
    // Bad content is deleted; `DATA 0` + INVALID (putoffset's probe) leaves an empty temp file.
    assert.deepEqual(await tmpFiles(tw['annex-proxy'].dir), await tmpFiles(tw.reference.dir))
  })

  test('GIT_ANNEX_SHELL_READONLY refuses put and remove, GIT_ANNEX_SHELL_APPENDONLY refuses remove; both allow reads and locks', async (t) => {
    const tw = await twins(t)
    await same(t, tw, () => [line('VERSION 4'), line(`PUT  ${HELLO}`), ...data(hello), line('VALID')])
    const script = (put: readonly Chunk[]) => [
      line('VERSION 4'),
      line(`PUT  ${WORLD}`),
      ...put,
      line(`REMOVE ${HELLO}`),
      line(`REMOVE-BEFORE 99999999 ${HELLO}`),
      line(`LOCKCONTENT ${HELLO}`),
      line('UNLOCKCONTENT'),
      line(`GET 0  ${HELLO}`),
      line('SUCCESS'),
      line(`CHECKPRESENT ${HELLO}`),
    ]
    const ro = await same(t, tw, () => script([]), { env: { GIT_ANNEX_SHELL_READONLY: '1' } })
    assert.match(ro.stdout, /^ERROR this repository is read-only; write access denied$/m)
    // Set but empty counts as unset, as for git-annex-shell.
    await same(t, tw, () => [line('VERSION 4'), line(`PUT  ${WORLD}`), line('ERROR stop')], { env: { GIT_ANNEX_SHELL_READONLY: '' } })
    const ao = await same(t, tw, () => script([...data(world), line('VALID')]), { env: { GIT_ANNEX_SHELL_APPENDONLY: 'true' } })
    assert.match(ao.stdout, /^ERROR this repository is append-only; removal denied$/m)
    assert.match(ao.stdout, /^PUT-FROM 0$/m)
    for (const w of Object.values(tw)) assert.equal(await presentInBranch(w.dir, WORLD), true)
  })

  test('the front script serves p2pstdio with annex-proxy, given argv or one -c command line', async (t) => {
    const tw = await twins(t)
    const script = () => [line('VERSION 3'), line(`PUT  ${HELLO}`), ...data(hello), line('VALID'), line(`CHECKPRESENT ${HELLO}`)]
    await same(t, tw, script, { impl: 'front' })
    // As sshd runs a login shell, or authorized_keys command="git-annex-shell -c \"$SSH_ORIGINAL_COMMAND\"".
    const asOne = (w: Twin) => ['-c', `git-annex-shell 'p2pstdio' '${w.dir}' '${CLIENT}' --uuid ${w.uuid}`]
    const ref = await session(t, 'reference-argv', asOne(tw.reference), [line('VERSION 4'), line(`CHECKPRESENT ${HELLO}`)])
    const ours = await session(t, 'front-argv', asOne(tw['annex-proxy']), [line('VERSION 4'), line(`CHECKPRESENT ${HELLO}`)], { ANNEX_PROXY_LOG_LEVEL: 'debug' })
    assert.equal(normalized(ours, tw['annex-proxy'].uuid), normalized(ref, tw.reference.uuid))
    assert.equal(ours.stdout, `AUTH-SUCCESS ${tw['annex-proxy'].uuid}\nVERSION 4\nSUCCESS\n`, ours.stderr)
    assert.match(ours.stderr, /P2P < CHECKPRESENT/, 'served by annex-proxy (its debug log)')
  })

  test('CONNECT and NOTIFYCHANGE end the session with the reference’s message and status', async (t) => {
    const tw = await twins(t)
    for (const [msg, text] of [
      ['CONNECT git-upload-pack', 'relaying to git not supported on this connection'],
      ['NOTIFYCHANGE', 'change notification not available'],
    ] as const) {
      const ours = await same(t, tw, () => [line('VERSION 4'), line(msg), line('GETTIMESTAMP')])
      assert.equal(ours.code, 1)
      assert.match(ours.stderr, new RegExp(text))
    }
  })

  test('refusals before the greeting: wrong UUID, not a repository, not initialised, no client UUID, GIT_ANNEX_SHELL_DIRECTORY', async (t) => {
    const tw = await twins(t)
    const root = await tempDir(t)
    const plain = join(root, 'plain')
    await git(root, 'init', '-q', plain)
    const other = '11111111-2222-4333-8444-555555555555'
    const cases: Array<[string, (w: Twin) => string[], NodeJS.ProcessEnv, RegExp]> = [
      ['wrong uuid', (w) => [w.dir, CLIENT, '--uuid', other], {}, /expected repository UUID 11111111-2222-4333-8444-555555555555 but found UUID/],
      ['no repository', () => [join(root, 'nothing'), CLIENT, '--uuid', other], {}, /failed to read git config of git repository/],
      ['uninitialised', () => [plain, CLIENT, '--uuid', other], {}, /expected repository UUID 11111111-2222-4333-8444-555555555555 but found uninitialized repository/],
      ['no client uuid', (w) => [w.dir], {}, /missing UUID parameter/],
      ['directory', (w) => [w.dir, CLIENT, '--uuid', w.uuid], { GIT_ANNEX_SHELL_DIRECTORY: '/srv/annex' }, /Only allowed to access \/srv\/annex not /],
    ]
    for (const [what, args, env, message] of cases) {
      const ref = await session(t, 'reference', args(tw.reference), [line('VERSION 4')], env)
      const ours = await session(t, 'annex-proxy', args(tw['annex-proxy']), [line('VERSION 4')], env)
      assert.equal(ours.stdout, '', `${what}: no greeting`)
      assert.equal(ref.stdout, '', `${what}: no greeting from the reference either`)
      assert.equal(ours.code, ref.code, `${what}: exit status`)
      assert.match(ref.stderr, message, `${what}: the reference says so`)
      assert.match(ours.stderr, message, `${what}: ours says so`)
    }
    // The directory allowed, named as given or home-relative: served.
    const w = tw['annex-proxy']
    const ok = await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4')], { GIT_ANNEX_SHELL_DIRECTORY: w.dir })
    assert.equal(ok.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\n`)
    // Without --uuid the repository itself is served, as by the reference.
    const noUuid = await session(t, 'annex-proxy', [w.dir, CLIENT], [line('VERSION 1')])
    assert.equal(noUuid.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 1\n`)
  })
})

describe('where annex-proxy p2pstdio departs from the reference on purpose', { timeout: 300_000 }, () => {
  test('content its sender calls INVALID is not committed (the reference re-verifies and keeps it); the temp file keeps it for a resume', async (t) => {
    const tw = await twins(t)
    const w = tw['annex-proxy']
    const r = await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4'), line(`PUT  ${HELLO}`), ...data(hello), line('INVALID'), line(`CHECKPRESENT ${HELLO}`), line(`PUT  ${HELLO}`)])
    assert.equal(r.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\nPUT-FROM 0\nFAILURE\nFAILURE\nPUT-FROM 6\n`)
  })

  test('removing locked content is answered FAILURE and the session goes on (the reference ends the session)', async (t) => {
    const tw = await twins(t)
    const w = tw['annex-proxy']
    await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4'), line(`PUT  ${HELLO}`), ...data(hello), line('VALID')])
    const [cmd, argv] = command('annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid])
    const locker = spawn(cmd, argv, { env: gitEnv, stdio: ['pipe', 'pipe', 'inherit'] })
    defer(t, async () => {
      locker.stdin.end()
      if (locker.exitCode === null) await once(locker, 'exit')
    })
    locker.stdin.write(`VERSION 4\nLOCKCONTENT ${HELLO}\n`)
    let seen = ''
    for await (const d of locker.stdout) {
      seen += String(d)
      if (seen.endsWith('SUCCESS\n')) break
    }
    assert.match(seen, /\nSUCCESS\n$/)
    const r = await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4'), line(`REMOVE ${HELLO}`), line(`CHECKPRESENT ${HELLO}`)])
    assert.equal(r.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\nFAILURE\nSUCCESS\n`)
    locker.stdin.end('UNLOCKCONTENT\n')
    await once(locker, 'exit')
    const after = await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4'), line(`REMOVE ${HELLO}`)])
    assert.equal(after.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\nSUCCESS\n`)
  })

  test('a second session uploading a key another session is writing gets ERROR and goes on (the reference ends the session); nothing mixed is committed', async (t) => {
    const tw = await twins(t)
    const w = tw['annex-proxy']
    const [cmd, argv] = command('annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid])
    const first = spawn(cmd, argv, { env: gitEnv, stdio: ['pipe', 'pipe', 'inherit'] })
    defer(t, async () => {
      if (first.exitCode === null) first.kill('SIGKILL')
    })
    let out = ''
    first.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    // Half the bytes, then nothing: the first session holds the key's temp file.
    first.stdin.write(`VERSION 4\nPUT  ${WORLD}\nDATA 6\nwor`)
    const tmp = join(w.dir, '.git/annex/tmp', WORLD)
    const deadline = Date.now() + 60_000
    while (((await stat(tmp).catch(() => undefined))?.size ?? 0) < 3) {
      assert.ok(Date.now() < deadline, 'the first session did not write its 3 bytes within 60 s')
      await new Promise((r) => setTimeout(r, 20))
    }
    const bad = Buffer.from('WORLD\n')
    const second = await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4'), line(`PUT  ${WORLD}`), ...data(bad), line('VALID'), line(`CHECKPRESENT ${WORLD}`)])
    assert.equal(second.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\nPUT-FROM 3\nERROR transfer already in progress, or unable to take transfer lock\nFAILURE\n`)
    first.stdin.end('ld\nVALID\n')
    await once(first, 'exit')
    assert.equal(out, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\nPUT-FROM 0\nSUCCESS\n`)
    await annex(w.dir, 'fsck', '-q', '--key', WORLD)
  })

  test('the whole key is checked: a key with no size is stored and verified too', async (t) => {
    const tw = await twins(t)
    const w = tw['annex-proxy']
    const k = serializeKey(parseKey(HELLO.replace(/-s6--/, '--')))
    const r = await session(t, 'annex-proxy', [w.dir, CLIENT, '--uuid', w.uuid], [line('VERSION 4'), line(`PUT  ${k}`), ...data(hello), line('VALID')])
    assert.equal(r.stdout, `AUTH-SUCCESS ${w.uuid}\nVERSION 4\nPUT-FROM 0\nSUCCESS\n`)
    assert.equal(await presentInBranch(w.dir, k), true)
    await annex(w.dir, 'fsck', '-q', '--key', k)
  })
})
