// The one place where domain errors become wire replies, and wire replies from a
// downstream server become domain errors again. Record<Code, …> makes the compiler reject
// a new error code that has no mapping.
import {
  AbortedError,
  AllTargetsFailedError,
  AppendOnlyError,
  BadKeyError,
  BadRequestError,
  type Code,
  ConfigError,
  CoordinationUnavailableError,
  DiskFullError,
  HashMismatchError,
  LengthMismatchError,
  LockedError,
  NotPresentError,
  NotSupportedError,
  OverloadedError,
  ProxyError,
  ReadOnlyError,
  RemoteUnavailableError,
  StalledError,
  TransferInProgressError,
  UnknownRepoError,
} from '../errors.js'

interface WireReply {
  readonly http: number
  /** How a P2P server session answers: FAILURE keeps the session, ERROR reports text. */
  readonly p2p: 'FAILURE' | 'ERROR'
  readonly make: new (message: string, options?: ErrorOptions) => ProxyError
}

const WIRE: Readonly<Record<Code, WireReply>> = {
  BAD_KEY: { http: 400, p2p: 'ERROR', make: BadKeyError },
  BAD_REQUEST: { http: 400, p2p: 'ERROR', make: BadRequestError },
  UNKNOWN_REPO: { http: 404, p2p: 'ERROR', make: UnknownRepoError },
  HASH_MISMATCH: { http: 422, p2p: 'FAILURE', make: HashMismatchError },
  LENGTH_MISMATCH: { http: 400, p2p: 'FAILURE', make: LengthMismatchError },
  NOT_PRESENT: { http: 404, p2p: 'FAILURE', make: NotPresentError },
  NOT_SUPPORTED: { http: 501, p2p: 'ERROR', make: NotSupportedError },
  LOCKED: { http: 409, p2p: 'FAILURE', make: LockedError },
  TRANSFER_IN_PROGRESS: { http: 409, p2p: 'ERROR', make: TransferInProgressError },
  DISK_FULL: { http: 507, p2p: 'ERROR', make: DiskFullError },
  READ_ONLY: { http: 403, p2p: 'ERROR', make: ReadOnlyError },
  APPEND_ONLY: { http: 403, p2p: 'ERROR', make: AppendOnlyError },
  REMOTE_UNAVAILABLE: { http: 502, p2p: 'ERROR', make: RemoteUnavailableError },
  ABORTED: { http: 500, p2p: 'ERROR', make: AbortedError },
  CONFIG: { http: 500, p2p: 'ERROR', make: ConfigError },
  OVERLOADED: { http: 503, p2p: 'ERROR', make: OverloadedError },
  ALL_TARGETS_FAILED: { http: 502, p2p: 'FAILURE', make: AllTargetsFailedError },
  STALLED: { http: 504, p2p: 'ERROR', make: StalledError },
  COORDINATION_UNAVAILABLE: { http: 503, p2p: 'ERROR', make: CoordinationUnavailableError },
}

/**
 * Several codes share a status (the reference's statuses are coarse), so an annex-proxy
 * names the code of an error answer in this header; another annex-proxy in front of it
 * (a cluster node over annex+http) then gets the very error back. The reference ignores it.
 */
export const ERROR_CODE_HEADER = 'x-annex-proxy-error'

/** What a status means when the answer names no code (the reference, or a proxy in between). */
const BY_STATUS: Readonly<Record<number, Code>> = {
  400: 'BAD_REQUEST',
  403: 'READ_ONLY',
  404: 'UNKNOWN_REPO',
  409: 'TRANSFER_IN_PROGRESS',
  422: 'HASH_MISMATCH',
  501: 'NOT_SUPPORTED',
  502: 'REMOTE_UNAVAILABLE',
  503: 'OVERLOADED',
  504: 'STALLED',
  507: 'DISK_FULL',
}

export interface HttpError {
  readonly status: number
  readonly body: string
  /** Sent as ERROR_CODE_HEADER; absent for errors that are not ours to explain. */
  readonly code?: Code
}

/** Never leaks a stack trace: unknown errors become a generic 500. */
export function toHttp(err: unknown): HttpError {
  if (err instanceof ProxyError) return { status: WIRE[err.code].http, body: err.message, code: err.code }
  return { status: 500, body: 'internal server error' }
}

const isCode = (c: string | undefined): c is Code => c !== undefined && Object.hasOwn(WIRE, c)

/**
 * The domain error for a downstream server's error answer: the code it named when that
 * code goes with the status, else what the status means. A 500 (whatever code it names:
 * the downstream's own abort or configuration is not ours) and any status no server of
 * this protocol sends are a RemoteUnavailableError, so a cluster fails over. The message
 * is `why`, the answer's own text appended.
 */
export function fromHttp(status: number, body: string, codeHeader?: string, why = `HTTP ${status}`): ProxyError {
  const text = body.trim().slice(0, 500)
  const message = text === '' ? why : `${why}: ${text}`
  const named = status !== 500 && isCode(codeHeader) && WIRE[codeHeader].http === status ? codeHeader : undefined
  const code = named ?? BY_STATUS[status]
  return code === undefined ? new RemoteUnavailableError(message) : new WIRE[code].make(message)
}

export function toP2p(err: unknown): { readonly reply: 'FAILURE' | 'ERROR'; readonly text: string } {
  if (err instanceof ProxyError) return { reply: WIRE[err.code].p2p, text: err.message }
  return { reply: 'ERROR', text: 'internal error' }
}
