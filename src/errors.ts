// Domain errors. They carry a stable code and know nothing of HTTP or P2P:
// src/protocol/error-map.ts is the only place that turns them into wire replies.

export type Code =
  | 'BAD_KEY'
  | 'BAD_REQUEST'
  | 'UNKNOWN_REPO'
  | 'HASH_MISMATCH'
  | 'LENGTH_MISMATCH'
  | 'NOT_PRESENT'
  | 'NOT_SUPPORTED'
  | 'LOCKED'
  | 'TRANSFER_IN_PROGRESS'
  | 'DISK_FULL'
  | 'READ_ONLY'
  | 'APPEND_ONLY'
  | 'REMOTE_UNAVAILABLE'
  | 'ABORTED'
  | 'CONFIG'
  | 'OVERLOADED'
  | 'ALL_TARGETS_FAILED'
  | 'STALLED'

export abstract class ProxyError extends Error {
  abstract readonly code: Code
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }
}

export class BadKeyError extends ProxyError {
  readonly code = 'BAD_KEY'
}
export class BadRequestError extends ProxyError {
  readonly code = 'BAD_REQUEST'
}
export class UnknownRepoError extends ProxyError {
  readonly code = 'UNKNOWN_REPO'
}
/** Content whose digest does not match the key: nothing may be committed. */
export class HashMismatchError extends ProxyError {
  readonly code = 'HASH_MISMATCH'
}
/** A body shorter or longer than announced, or than the key's size. */
export class LengthMismatchError extends ProxyError {
  readonly code = 'LENGTH_MISMATCH'
}
export class NotPresentError extends ProxyError {
  readonly code = 'NOT_PRESENT'
}
export class NotSupportedError extends ProxyError {
  readonly code = 'NOT_SUPPORTED'
}
/** Content is locked (lockcontent or an unexpired retention timestamp) and cannot be removed. */
export class LockedError extends ProxyError {
  readonly code = 'LOCKED'
}
export class TransferInProgressError extends ProxyError {
  readonly code = 'TRANSFER_IN_PROGRESS'
}
export class DiskFullError extends ProxyError {
  readonly code = 'DISK_FULL'
}
export class ReadOnlyError extends ProxyError {
  readonly code = 'READ_ONLY'
}
export class AppendOnlyError extends ProxyError {
  readonly code = 'APPEND_ONLY'
}
export class RemoteUnavailableError extends ProxyError {
  readonly code = 'REMOTE_UNAVAILABLE'
}
export class AbortedError extends ProxyError {
  readonly code = 'ABORTED'
}
export class ConfigError extends ProxyError {
  readonly code = 'CONFIG'
}
export class OverloadedError extends ProxyError {
  readonly code = 'OVERLOADED'
}
/** Every branch of a fanout failed: the upload has nowhere left to go. */
export class AllTargetsFailedError extends ProxyError {
  readonly code = 'ALL_TARGETS_FAILED'
}
/** A consumer made no progress within its time limit and was dropped. */
export class StalledError extends ProxyError {
  readonly code = 'STALLED'
}
