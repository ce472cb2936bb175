// The server's configuration: p2phttp's flags (same names and meanings) plus ours,
// validated once and frozen. Every memory and concurrency bound is a value here.
import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'
import type { AuthFlags } from '../protocol/http/auth.js'
import type { HasherKind } from '../streams/verify.js'
import { readSize } from '../annex/data-units.js'
import { DEFAULT_YOUNG_GENERATION_MIB } from './young-generation.js'

/** The auth flags (p2phttp's --wideopen … --authenv-http) are declared once, in auth.ts. */
export interface ServeConfig extends Required<AuthFlags> {
  readonly bind: string
  readonly port: number
  readonly jobs: number
  readonly repos: readonly string[]
  readonly directories: readonly string[]
  readonly certfile: string | undefined
  readonly privatekeyfile: string | undefined
  readonly chainfile: string | undefined
  readonly lockedfiles: number
  /** Bytes buffered per node of a cluster upload: memory per upload ≈ (nodes + 1) × this. */
  readonly fanoutHighWaterMark: number
  /** A cluster node that takes no bytes for this many seconds is dropped from an upload. */
  readonly fanoutStallSeconds: number
  /** Seconds a lock lives without a keeplocked request (spec §2.6: 600). */
  readonly lockExpirySeconds: number
  readonly hasher: HasherKind
  /**
   * When a served repository's location-log change is committed into its git-annex branch:
   * 'answer' (default) before the request is answered (clients that fetch, merge and push the
   * branch right after their uploads, as DataLad's push, never race the server; one plumbing
   * commit per answer group), 'idle' once the log has been idle for a second (what upstream
   * git annex p2phttp does since 10.20260213; races such clients).
   */
  readonly locationLogCommit: 'answer' | 'idle'
  readonly logLevel: string
  /** Seconds in-flight requests get to finish on SIGTERM/SIGINT before they are aborted. */
  readonly shutdownGraceSeconds: number
  /** Requests waiting for a worker beyond this many are refused with 503. */
  readonly maxQueue: number
  readonly maxQueueWaitSeconds: number
  /** Seconds a connection may wait on its client without a byte either way (reset on progress). */
  readonly clientTimeoutSeconds: number
  /** Open connections beyond this many are answered 503 + Retry-After and closed. */
  readonly maxConnections: number
  /**
   * Idle git-annex-shell sessions kept open to each proxied remote. Default (undefined): as
   * many as --jobs, so a steady load does not respawn them (p2phttp's default is 1).
   */
  readonly proxyConnections: number | undefined
  /** --directory repositories open at once (each may hold git processes); more are opened by closing idle ones. */
  readonly maxOpenRepos: number
  /** Fewest seconds between rescans of --directory caused by authorized requests for unknown UUIDs. */
  readonly rescanIntervalSeconds: number
  /** A --directory repository unused this many seconds is closed. */
  readonly repoIdleSeconds: number
  /** Where the index of --directory repositories is kept between runs (undefined: none). */
  readonly stateDir: string | undefined
  /** --redis: placement state (reservations, locks, location facts) shared by a fleet of gateways. */
  readonly redis: string | undefined
  /** Seconds a dead gateway's reservations and locks outlive it in Redis. */
  readonly redisLeaseSeconds: number
  /** Serve Prometheus metrics at /metrics on the main port (--metrics). */
  readonly metrics: boolean
  /** Serve them on their own port instead (--metrics-port; bound to --metrics-bind, default --bind). */
  readonly metricsPort: number | undefined
  readonly metricsBind: string | undefined
  /**
   * Bytes of retrieved chunks kept on the gateway's disk (all gateways of the process
   * together) for remotes reached over a network or git-annex; 0 turns the cache off.
   */
  readonly cacheSize: number
  /** Bytes per cached chunk: the most a cached retrieve holds in memory, and resume granularity. */
  readonly cacheChunk: number
  /**
   * Parts of one multipart upload to an S3 remote sent at once: memory per S3 upload at most
   * this × the remote's part size (8 MiB unless remote.log's partsize says otherwise).
   */
  readonly s3PartsInFlight: number
  /** Presigned-PUT uploads to proxied S3 remotes (--indirect-upload): undefined when off. */
  readonly indirectUpload: { readonly expirySeconds: number; readonly verify: 'readback' | 'store' } | undefined
  /** MiB per semi-space of V8's young generation at most (--young-generation; 0: V8's own limit). */
  readonly youngGenerationMiB: number
  /** --socket: listen on this unix socket instead of TCP. */
  readonly socket: string | undefined
  /** Origins whose web pages may call every endpoint, credentials included (--cors-origin); empty: CORS off. */
  readonly corsOrigins: readonly string[]
}

export const DEFAULT_PORT = 9417
/** The AWS SDK's own upload (lib-storage) sends 4 parts at once too. */
export const DEFAULT_S3_PARTS_IN_FLIGHT = 4

/** One serve flag: how parseArgs reads it, and how `annex-proxy --help` shows it. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean'
  readonly short?: string
  readonly multiple?: boolean
  /** The value's placeholder in the usage text (string options). */
  readonly arg?: string
  readonly help: string
}

/**
 * Every `serve` flag, once: parseArgs reads this table and the usage text is generated
 * from it, so a flag cannot be accepted without being documented.
 */
export const SERVE_OPTIONS = {
  repo: { type: 'string', multiple: true, arg: 'DIR', help: 'serve this repository (repeatable; default: the working directory)' },
  directory: { type: 'string', multiple: true, arg: 'DIR', help: 'serve every git-annex repository beneath DIR (repeatable); found without waiting, opened on first request' },
  'max-open-repos': { type: 'string', arg: 'N', help: '--directory repositories kept open at once; the least recently used idle one is closed for another (default 64)' },
  'rescan-interval': { type: 'string', arg: 'S', help: 'an authorized request for an unknown UUID rescans --directory at most once per S seconds (default 2)' },
  'repo-idle': { type: 'string', arg: 'S', help: 'a --directory repository unused for S seconds is closed with its git processes (default 60)' },
  'state-dir': { type: 'string', arg: 'DIR', help: "keep the index of --directory repositories here, so after a restart a known repository is served before the first walk reaches it (default: none)" },
  port: { type: 'string', arg: 'N', help: `port to listen on (default ${DEFAULT_PORT}; 0: any free port, reported in the log)` },
  bind: { type: 'string', arg: 'ADDR', help: 'address to listen on (default 127.0.0.1)' },
  socket: { type: 'string', arg: 'PATH', help: 'listen on a unix socket (mode 0660) instead of TCP; a stale socket file is replaced' },
  jobs: { type: 'string', short: 'J', arg: 'N', help: 'operations at once per served repository; transfers move bytes without one (default 4)' },
  wideopen: { type: 'boolean', help: 'anyone may read, write and remove without credentials' },
  'unauth-readonly': { type: 'boolean', help: 'anyone may read without credentials' },
  'unauth-appendonly': { type: 'boolean', help: 'anyone may read and add content without credentials' },
  'unauth-nolocking': { type: 'boolean', help: 'no content locking without credentials' },
  authenv: { type: 'boolean', help: 'users from GIT_ANNEX_P2PHTTP_PASSWORD_<user> (HTTPS only)' },
  'authenv-http': { type: 'boolean', help: 'users from GIT_ANNEX_P2PHTTP_PASSWORD_<user>, also over plain HTTP' },
  certfile: { type: 'string', arg: 'FILE', help: 'TLS certificate (with --privatekeyfile): serve HTTPS' },
  privatekeyfile: { type: 'string', arg: 'FILE', help: 'TLS private key' },
  chainfile: { type: 'string', arg: 'FILE', help: 'TLS certificate chain' },
  lockedfiles: { type: 'string', arg: 'N', help: 'most content locks held at once (default 100)' },
  'lock-expiry': { type: 'string', arg: 'S', help: 'seconds a lock lives without a keeplocked request (default 600)' },
  'fanout-buffer': { type: 'string', arg: 'BYTES', help: 'bytes buffered per node of a cluster upload (default 1048576)' },
  'fanout-stall': { type: 'string', arg: 'S', help: 'a cluster node taking no bytes for S seconds is dropped from an upload (default 60)' },
  hasher: { type: 'string', arg: 'wasm|native|auto', help: 'hash implementation used to verify content (default auto)' },
  'location-log-commit': { type: 'string', arg: 'answer|idle', help: "commit the served git-annex branch before each answer (default; DataLad's push needs it) or once idle (races clients that push the branch right after uploading)" },
  'log-level': { type: 'string', arg: 'LEVEL', help: 'pino log level (default info)' },
  'shutdown-grace': { type: 'string', arg: 'S', help: 'seconds in-flight requests get to finish on SIGTERM/SIGINT (default 10)' },
  'max-queue': { type: 'string', arg: 'N', help: 'requests waiting for a worker beyond N are refused with 503 (default 64 x --jobs)' },
  'max-queue-wait': { type: 'string', arg: 'S', help: 'a request waiting S seconds for a worker is refused with 503 (default 120)' },
  'client-timeout': { type: 'string', arg: 'S', help: 'a client that sends or reads no byte for S seconds is disconnected (default 60)' },
  'max-connections': { type: 'string', arg: 'N', help: 'open connections beyond N are answered 503 with Retry-After (default 256)' },
  proxyconnections: { type: 'string', arg: 'N', help: 'idle git-annex-shell sessions kept per proxied remote (default: up to max(4, --jobs))' },
  redis: { type: 'string', arg: 'URL', help: 'share placement state with other gateways of the same nodes: redis://host:port or unix:///path/to/socket' },
  'redis-lease': { type: 'string', arg: 'S', help: "seconds a dead gateway's reservations and locks outlive it in Redis (default 30)" },
  metrics: { type: 'boolean', help: 'serve Prometheus metrics at /metrics on this port (off by default)' },
  'metrics-port': { type: 'string', arg: 'N', help: 'serve /metrics on a listener of its own at port N (0: any free port, logged)' },
  'metrics-bind': { type: 'string', arg: 'ADDR', help: 'address of the --metrics-port listener (default: --bind)' },
  'cache-size': { type: 'string', arg: 'SIZE', help: 'disk for cached chunks of content read from remotes (git-annex size, default 1GiB; 0: off)' },
  'cache-chunk': { type: 'string', arg: 'SIZE', help: 'bytes per cached chunk: memory per cached GET (default 4MiB)' },
  's3-parts': { type: 'string', arg: 'N', help: 'parts of an S3 multipart upload sent at once, 1-16: memory per S3 upload at most N x partsize (default 4)' },
  'young-generation': { type: 'string', arg: 'MIB', help: "each semi-space of V8's young generation grows to at most MIB MiB (default 8; 0: V8's own limit, 16 on Node 20, 64 on Node 24): bounds the upload chunks waiting for the garbage collector" },
  'indirect-upload': { type: 'boolean', help: 'let write-permitted clients upload to proxied S3 remotes with presigned PUT URLs' },
  'indirect-upload-expiry': { type: 'string', arg: 'S', help: 'longest lifetime of a presigned upload URL in seconds (default 900)' },
  'indirect-upload-verify': { type: 'string', arg: 'readback|store', help: 'how an indirect upload is verified: read back and hashed (default) or the store\'s checksum' },
  'cors-origin': { type: 'string', multiple: true, arg: 'ORIGIN', help: 'let web pages of ORIGIN (scheme://host[:port]) call every endpoint, credentials included (repeatable; off by default)' },
  // Accepted for compatibility with p2phttp command lines: a cluster upload reaches every node at once.
  clusterjobs: { type: 'string', arg: 'N', help: 'accepted for p2phttp compatibility; a cluster upload reaches every node at once' },
  cpus: { type: 'string', arg: 'N', help: 'accepted for p2phttp compatibility' },
} as const satisfies Readonly<Record<string, OptionSpec>>

/** The `serve` options as the usage text lists them, one per line, generated from SERVE_OPTIONS. */
export function serveOptionsHelp(indent = '  '): string {
  return optionsHelp(SERVE_OPTIONS, indent)
}

/** A command's options as its usage text lists them, one per line, generated from its table. */
export function optionsHelp(table: Readonly<Record<string, OptionSpec>>, indent = '  '): string {
  const rows = Object.entries(table).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`
    return [flag, o.help] as const
  })
  const width = Math.max(...rows.map(([f]) => f.length)) + 2
  return rows.map(([f, h]) => `${indent}${f.padEnd(width)}${h}`).join('\n') + '\n'
}

function int(name: string, raw: string | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined) return def
  if (!/^[0-9]+$/.test(raw)) throw new ConfigError(`--${name} needs a whole number, got '${raw}'`)
  const n = Number(raw)
  if (n < min || n > max) throw new ConfigError(`--${name} must be between ${min} and ${max}, got ${n}`)
  return n
}

/** A data size in git-annex's syntax ("1GiB", "500 megabytes", "4096"). */
function size(name: string, raw: string | undefined, def: number, min: number, max: number, zeroOff = false): number {
  if (raw === undefined) return def
  const n = readSize(raw)
  if (n === undefined || !Number.isSafeInteger(n)) throw new ConfigError(`--${name} needs a size such as 1GiB or 500MB, got '${raw}'`)
  if (zeroOff && n === 0) return 0
  if (n < min || n > max) throw new ConfigError(`--${name} must be ${zeroOff ? '0 (off) or ' : ''}between ${min} and ${max} bytes, got ${n}`)
  return n
}

function indirect(o: { 'indirect-upload'?: boolean; 'indirect-upload-expiry'?: string; 'indirect-upload-verify'?: string }): ServeConfig['indirectUpload'] {
  const verify = o['indirect-upload-verify'] ?? 'readback'
  if (verify !== 'readback' && verify !== 'store') throw new ConfigError(`--indirect-upload-verify must be readback or store, got '${verify}'`)
  const expirySeconds = int('indirect-upload-expiry', o['indirect-upload-expiry'], 900, 1, 7 * 24 * 3600)
  if (!o['indirect-upload']) {
    if (o['indirect-upload-expiry'] !== undefined || o['indirect-upload-verify'] !== undefined) throw new ConfigError('--indirect-upload-expiry and --indirect-upload-verify need --indirect-upload')
    return undefined
  }
  return Object.freeze({ expirySeconds, verify })
}

/**
 * An origin exactly as browsers send it in `Origin:` (scheme://host[:port], lower case, no
 * default port, no path), since the header is compared byte for byte. `*` is refused:
 * browsers do not send credentials to a wildcard origin.
 */
function origins(raw: readonly string[] | undefined): readonly string[] {
  return Object.freeze(
    (raw ?? []).map((o) => {
      let url: URL | undefined
      try {
        url = new URL(o)
      } catch {
        url = undefined
      }
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== o.replace(/\/$/, '').toLowerCase())
        throw new ConfigError(`--cors-origin needs an origin such as https://data.example.org or http://127.0.0.1:8080 (scheme, host and port only), got '${o}'`)
      return url.origin
    }),
  )
}

function socketPath(path: string | undefined, tcpAsked: boolean): string | undefined {
  if (path === undefined) return undefined
  if (tcpAsked) throw new ConfigError('--socket listens instead of --port/--bind: give one or the other')
  if (path === '') throw new ConfigError('--socket needs a path')
  // sockaddr_un holds 107 bytes of path.
  if (Buffer.byteLength(path) > 107) throw new ConfigError(`--socket path is longer than a unix socket address allows (107 bytes): ${path}`)
  return path
}

function stateDir(v: string | undefined): string | undefined {
  if (v === '') throw new ConfigError('--state-dir needs a directory')
  return v
}

/** Parses `serve` arguments. `cwd` is served when neither --repo nor --directory is given. */
export function parseServeArgs(argv: readonly string[], cwd: string): ServeConfig {
  let parsed
  try {
    parsed = parseArgs({ args: [...argv], options: SERVE_OPTIONS, strict: true, allowPositionals: false })
  } catch (e) {
    throw new ConfigError((e as Error).message)
  }
  const o = parsed.values
  const hasher = o.hasher ?? 'auto'
  if (hasher !== 'auto' && hasher !== 'wasm' && hasher !== 'native') throw new ConfigError(`--hasher must be wasm, native or auto, got '${hasher}'`)
  const locationLogCommit = o['location-log-commit'] ?? 'answer'
  if (locationLogCommit !== 'answer' && locationLogCommit !== 'idle') throw new ConfigError(`--location-log-commit must be answer or idle, got '${locationLogCommit}'`)
  if ((o.certfile === undefined) !== (o.privatekeyfile === undefined)) throw new ConfigError('--certfile and --privatekeyfile go together')
  if (o.chainfile !== undefined && o.certfile === undefined) throw new ConfigError('--chainfile needs --certfile')
  const directories = o.directory ?? []
  const repos = o.repo ?? (directories.length === 0 ? [cwd] : [])
  const jobs = int('jobs', o.jobs, 4, 1, 1024)
  return Object.freeze({
    bind: o.bind ?? '127.0.0.1',
    port: int('port', o.port, DEFAULT_PORT, 0, 65535),
    jobs,
    repos: Object.freeze(repos),
    directories: Object.freeze(directories),
    wideopen: o.wideopen ?? false,
    unauthReadonly: o['unauth-readonly'] ?? false,
    unauthAppendonly: o['unauth-appendonly'] ?? false,
    unauthNolocking: o['unauth-nolocking'] ?? false,
    authenv: o.authenv ?? false,
    authenvHttp: o['authenv-http'] ?? false,
    certfile: o.certfile,
    privatekeyfile: o.privatekeyfile,
    chainfile: o.chainfile,
    lockedfiles: int('lockedfiles', o.lockedfiles, 100, 0),
    lockExpirySeconds: int('lock-expiry', o['lock-expiry'], 600, 1),
    fanoutHighWaterMark: int('fanout-buffer', o['fanout-buffer'], 1024 * 1024, 16 * 1024),
    fanoutStallSeconds: int('fanout-stall', o['fanout-stall'], 60, 1),
    hasher,
    locationLogCommit,
    logLevel: o['log-level'] ?? 'info',
    shutdownGraceSeconds: int('shutdown-grace', o['shutdown-grace'], 10, 0),
    maxQueue: int('max-queue', o['max-queue'], 64 * jobs, 0),
    maxQueueWaitSeconds: int('max-queue-wait', o['max-queue-wait'], 120, 1),
    clientTimeoutSeconds: int('client-timeout', o['client-timeout'], 60, 1, 86_400),
    maxConnections: int('max-connections', o['max-connections'], 256, 1, 1_000_000),
    proxyConnections: o.proxyconnections === undefined ? undefined : int('proxyconnections', o.proxyconnections, 1, 0, 1024),
    maxOpenRepos: int('max-open-repos', o['max-open-repos'], 64, 1, 1_000_000),
    rescanIntervalSeconds: int('rescan-interval', o['rescan-interval'], 2, 0, 3600),
    repoIdleSeconds: int('repo-idle', o['repo-idle'], 60, 1, 86_400),
    stateDir: stateDir(o['state-dir']),
    redis: o.redis,
    redisLeaseSeconds: int('redis-lease', o['redis-lease'], 30, 1, 86_400),
    metrics: o.metrics ?? false,
    metricsPort: o['metrics-port'] === undefined ? undefined : int('metrics-port', o['metrics-port'], 0, 0, 65535),
    metricsBind: o['metrics-bind'],
    cacheSize: size('cache-size', o['cache-size'], 1024 ** 3, 1024 * 1024, Number.MAX_SAFE_INTEGER, true),
    cacheChunk: size('cache-chunk', o['cache-chunk'], 4 * 1024 * 1024, 64 * 1024, 256 * 1024 * 1024),
    s3PartsInFlight: int('s3-parts', o['s3-parts'], DEFAULT_S3_PARTS_IN_FLIGHT, 1, 16),
    youngGenerationMiB: int('young-generation', o['young-generation'], DEFAULT_YOUNG_GENERATION_MIB, 0, 1024),
    indirectUpload: indirect(o),
    corsOrigins: origins(o['cors-origin']),
    socket: socketPath(o.socket, o.port !== undefined || o.bind !== undefined),
  })
}
