// `annex-proxy upload`: flags, wiring and exit status. The work is in uploader.ts.
import { execFile } from 'node:child_process'
import { setMaxListeners } from 'node:events'
import { randomUUID } from 'node:crypto'
import { resolve } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { ConfigError } from '../errors.js'
import { readSize } from '../annex/data-units.js'
import type { HasherKind } from '../keys/backend.js'
import { P2PHttpClient } from '../protocol/http/client.js'
import { listFiles, readManifest, type SourceFile } from './files.js'
import { HashPool } from './hash-pool.js'
import { DEFAULT_EXTENSION_RULES, parseBackend, type ExtensionRules } from './key-of.js'
import { barReporter, formatBytes, jsonReporter, silentReporter, summarize, summaryText, type Reporter } from './progress.js'
import { recordInClone } from './record.js'
import { resolveTarget, systemCAs } from './target.js'
import { uploadFiles, type FileResult } from './uploader.js'
import { UsageRequested } from '../errors.js'

const run = promisify(execFile)

export const UPLOAD_USAGE = `usage: annex-proxy upload (--url annex+http(s)://HOST:PORT/git-annex/ --uuid UUID | --to REMOTE)
                          [-J N] [--backend SHA256E] [--json] [--quiet] [--record DIR]
                          [--manifest FILE|-] [--read-ahead BYTES] [--hasher auto|native|wasm]
                          [--hash-threads N] [--stall-timeout SECONDS] PATH...
  Uploads files and directory trees (recursively) into the repository UUID served at URL
  (a plain repository, a node proxied by a gateway, or a cluster). Keys are those git annex
  add computes; a rerun skips what the server has and resumes partial uploads.
  --to REMOTE     a remote of the git-annex clone in the working directory (its annexurl and uuid)
  -J, --jobs N    transfers in flight (default 1)
  --backend B     key backend (default SHA256E): any hash backend the server verifies
  --json          one JSON line per file: file, key, bytes, seconds, result, plusuuids
  --quiet         no progress and no summary; failures are still reported on stderr
  --record DIR    afterwards, make the files annexed files of the git-annex clone DIR, present
                  where the server said (git annex whereis / get work there at once)
  --manifest F    upload the paths listed in F, one per line ('-': standard input)
  --read-ahead N  files up to N bytes are read once, into memory (default 4MiB; memory: N × -J)
  --stall-timeout S  a request with no progress for S seconds is abandoned and retried (default 120)
  credentials: user:password@ in the URL, or GIT_ANNEX_P2PHTTP_USERNAME / GIT_ANNEX_P2PHTTP_PASSWORD
`

export interface UploadArgs {
  readonly paths: readonly string[]
  readonly url: string | undefined
  readonly uuid: string | undefined
  readonly to: string | undefined
  readonly jobs: number
  readonly backend: string
  readonly json: boolean
  readonly quiet: boolean
  readonly record: string | undefined
  readonly manifest: string | undefined
  readonly readAhead: number
  readonly hasher: HasherKind
  readonly hashThreads: number | undefined
  readonly stallSeconds: number
}

/** A size as git-annex reads one (annex/data-units): "4MiB", "4 megabytes", "512k". */
function bytes(name: string, raw: string): number {
  const n = readSize(raw)
  if (n === undefined || !Number.isSafeInteger(n) || n < 0) throw new ConfigError(`--${name} needs a size like 4MiB, got '${raw}'`)
  return n
}

function count(name: string, raw: string | undefined, def: number | undefined, max: number): number | undefined {
  if (raw === undefined) return def
  if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new ConfigError(`--${name} needs a whole number from 1 to ${max}, got '${raw}'`)
  return Number(raw)
}

export function parseUploadArgs(argv: readonly string[]): UploadArgs {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        uuid: { type: 'string' },
        to: { type: 'string' },
        jobs: { type: 'string', short: 'J' },
        backend: { type: 'string' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
        record: { type: 'string' },
        manifest: { type: 'string' },
        'read-ahead': { type: 'string' },
        hasher: { type: 'string' },
        'hash-threads': { type: 'string' },
        'stall-timeout': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n${UPLOAD_USAGE}`)
  }
  const o = parsed.values
  if (o.help) throw new UsageRequested()
  const hasher = o.hasher ?? 'auto'
  if (hasher !== 'auto' && hasher !== 'native' && hasher !== 'wasm') throw new ConfigError(`--hasher must be auto, native or wasm, got '${hasher}'`)
  if (parsed.positionals.length === 0 && o.manifest === undefined) throw new ConfigError(`nothing to upload: name files or directories, or --manifest\n${UPLOAD_USAGE}`)
  return {
    paths: parsed.positionals,
    url: o.url,
    uuid: o.uuid,
    to: o.to,
    jobs: count('jobs', o.jobs, 1, 256)!,
    backend: o.backend ?? 'SHA256E',
    json: o.json ?? false,
    quiet: o.quiet ?? false,
    record: o.record,
    manifest: o.manifest,
    readAhead: o['read-ahead'] === undefined ? 4 * 1024 * 1024 : bytes('read-ahead', o['read-ahead']),
    hasher,
    hashThreads: count('hash-threads', o['hash-threads'], undefined, 64),
    stallSeconds: count('stall-timeout', o['stall-timeout'], 120, 86_400)!,
  }
}

async function gitConfigInt(cwd: string, key: string): Promise<number | undefined> {
  try {
    const { stdout } = await run('git', ['config', '--get', key], { cwd })
    const n = Number(stdout.trim())
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined
  } catch {
    return undefined
  }
}

/** annex.maxextensionlength / annex.maxextensions as `git annex add` in `dir` would read them. */
export async function extensionRules(dir: string): Promise<ExtensionRules> {
  return {
    maxExtensionLength: (await gitConfigInt(dir, 'annex.maxextensionlength')) ?? DEFAULT_EXTENSION_RULES.maxExtensionLength,
    maxExtensions: (await gitConfigInt(dir, 'annex.maxextensions')) ?? DEFAULT_EXTENSION_RULES.maxExtensions,
  }
}

async function clientUuid(dir: string): Promise<string> {
  try {
    const { stdout } = await run('git', ['config', '--get', 'annex.uuid'], { cwd: dir })
    if (stdout.trim()) return stdout.trim()
  } catch {
    // not a git-annex repository: any UUID names this run
  }
  return randomUUID()
}

/** Runs the command; resolves with the exit code (0: every file is on the server). */
export async function runUpload(argv: readonly string[], io: { cwd: string; env: NodeJS.ProcessEnv; stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream }): Promise<number> {
  let args: UploadArgs
  try {
    args = parseUploadArgs(argv)
  } catch (e) {
    if (e instanceof UsageRequested) {
      io.stdout.write(UPLOAD_USAGE)
      return 0
    }
    throw e
  }
  const backend = parseBackend(args.backend)
  const target = await resolveTarget({ url: args.url, uuid: args.uuid, to: args.to, cwd: io.cwd, env: io.env })
  const recordDir = args.record === undefined ? undefined : resolve(io.cwd, args.record)
  const rules = await extensionRules(recordDir ?? io.cwd)
  const paths = args.manifest !== undefined ? [...(await readManifest(args.manifest, io.cwd)), ...args.paths] : args.paths
  const { files, skipped } = await listFiles(paths, io.cwd)
  for (const s of skipped) io.stderr.write(`upload: skipped ${s.name}: ${s.why}\n`)

  const client = new P2PHttpClient(target.url, {
    clientUuid: await clientUuid(recordDir ?? io.cwd),
    ...(target.credentials ? { credentials: target.credentials } : {}),
    connections: args.jobs + 1,
    ...(target.url.toLowerCase().includes('https:') ? { ca: systemCAs() } : {}),
  })
  const hashes = new HashPool(backend.algorithm, args.hasher, args.hashThreads)
  const ac = new AbortController()
  // Every request of the run listens on this one signal (and removes its listener when done).
  setMaxListeners(0, ac.signal)
  let interrupted = false
  const onSignal = () => {
    if (interrupted) process.exit(130)
    interrupted = true
    ac.abort(new Error('interrupted'))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const totalBytes = files.reduce((a, f) => a + f.size, 0)
  const reporter: Reporter = args.json ? jsonReporter(io.stdout) : !args.quiet && io.stderr.isTTY ? barReporter(totalBytes, files.length, io.stderr) : silentReporter()
  const t0 = performance.now()
  let results: FileResult[]
  try {
    results = await uploadFiles(files, {
      client,
      uuid: target.uuid,
      backend,
      extensionRules: rules,
      hashes,
      hasher: args.hasher,
      jobs: args.jobs,
      readAhead: args.readAhead,
      stallMs: args.stallSeconds * 1000,
      signal: ac.signal,
      events: reporter,
    })
  } finally {
    reporter.stop()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await hashes.close()
    await client.close().catch(() => client.destroy())
  }
  const seconds = (performance.now() - t0) / 1000
  const summary = summarize(results, seconds)
  const notRun = files.length - results.length
  const failed = results.filter((r) => r.result === 'failed')
  for (const r of failed) io.stderr.write(`upload: failed: ${r.file}: ${r.error ?? 'unknown error'}\n`)
  if (!args.quiet) io.stderr.write(`${summaryText(summary, notRun)}\n`)

  let recordFailed = false
  if (recordDir !== undefined) {
    const rec = await recordInClone(recordDir, target.uuid, results)
    for (const f of rec.failures) io.stderr.write(`upload: --record: ${f}\n`)
    recordFailed = rec.failures.length > 0
    if (!args.quiet) io.stderr.write(`upload: recorded ${rec.recorded} files in ${recordDir} (staged; commit them there)\n`)
  }
  if (interrupted) {
    io.stderr.write(`upload: interrupted; ${notRun} files not attempted, ${formatBytes(summary.bytesSent)} sent. Run the same command again to resume.\n`)
    return 130
  }
  return failed.length > 0 || notRun > 0 || recordFailed || skippedAny(skipped, files) ? 1 : 0
}

function skippedAny(skipped: readonly { why: string }[], _files: readonly SourceFile[]): boolean {
  // A missing path is an error; a symlink left alone is what git annex add would do.
  return skipped.some((s) => !s.why.startsWith('a symbolic link'))
}
