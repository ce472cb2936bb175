// The one place where domain errors become wire replies. Record<Code, …> makes the
// compiler reject a new error code that has no mapping.
import { type Code, ProxyError } from '../errors.js'

interface WireReply {
  readonly http: number
  /** How a P2P server session answers: FAILURE keeps the session, ERROR reports text. */
  readonly p2p: 'FAILURE' | 'ERROR'
}

const WIRE: Readonly<Record<Code, WireReply>> = {
  BAD_KEY: { http: 400, p2p: 'ERROR' },
  BAD_REQUEST: { http: 400, p2p: 'ERROR' },
  UNKNOWN_REPO: { http: 404, p2p: 'ERROR' },
  HASH_MISMATCH: { http: 422, p2p: 'FAILURE' },
  LENGTH_MISMATCH: { http: 400, p2p: 'FAILURE' },
  NOT_PRESENT: { http: 404, p2p: 'FAILURE' },
  NOT_SUPPORTED: { http: 501, p2p: 'ERROR' },
  LOCKED: { http: 409, p2p: 'FAILURE' },
  TRANSFER_IN_PROGRESS: { http: 409, p2p: 'ERROR' },
  DISK_FULL: { http: 507, p2p: 'ERROR' },
  READ_ONLY: { http: 403, p2p: 'ERROR' },
  APPEND_ONLY: { http: 403, p2p: 'ERROR' },
  REMOTE_UNAVAILABLE: { http: 502, p2p: 'ERROR' },
  ABORTED: { http: 500, p2p: 'ERROR' },
  CONFIG: { http: 500, p2p: 'ERROR' },
  OVERLOADED: { http: 503, p2p: 'ERROR' },
  ALL_TARGETS_FAILED: { http: 502, p2p: 'FAILURE' },
  STALLED: { http: 504, p2p: 'ERROR' },
}

export interface HttpError {
  readonly status: number
  readonly body: string
}

/** Never leaks a stack trace: unknown errors become a generic 500. */
export function toHttp(err: unknown): HttpError {
  if (err instanceof ProxyError) return { status: WIRE[err.code].http, body: err.message }
  return { status: 500, body: 'internal server error' }
}

export function toP2p(err: unknown): { readonly reply: 'FAILURE' | 'ERROR'; readonly text: string } {
  if (err instanceof ProxyError) return { reply: WIRE[err.code].p2p, text: err.message }
  return { reply: 'ERROR', text: 'internal error' }
}
