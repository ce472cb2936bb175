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
  | 'COORDINATION_UNAVAILABLE'

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
/** A path inside a repository that must be a regular file or a real directory is a symlink, FIFO or the like. */
export class UnsafePathError extends ConfigError {}
export class OverloadedError extends ProxyError {
  readonly code = 'OVERLOADED'
}
/** The Remote was closed or destroyed: it takes no new work (a 503, as for a server shutting down). */
export class ClosedError extends OverloadedError {}
/** Every branch of a fanout failed: the upload has nowhere left to go. */
export class AllTargetsFailedError extends ProxyError {
  readonly code = 'ALL_TARGETS_FAILED'
}
/** A consumer made no progress within its time limit and was dropped. */
export class StalledError extends ProxyError {
  readonly code = 'STALLED'
}
/** The state a fleet of gateways shares (Redis) cannot be reached: what needs it is refused, reads go on. */
export class CoordinationUnavailableError extends ProxyError {
  readonly code = 'COORDINATION_UNAVAILABLE'
}

// ---------------------------------------------------------------------------------------
// Refinements: each is one of the codes above, with a narrower meaning where it arises.

/** A downstream server refused the credentials (401 after sending them) or the action (403). */
export class PermissionDeniedError extends ReadOnlyError {
  constructor(
    message: string,
    readonly status: number,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** An indirect upload ticket this gateway did not issue, for another key, or past its time (403). */
export class InvalidTicketError extends ReadOnlyError {}

/** A downstream server answered something the protocol does not allow (missing header, bad JSON). */
export class ProtocolViolationError extends RemoteUnavailableError {}

/** Every version a downstream endpoint has was answered 404 or `bad version`. */
export class NoVersionError extends UnknownRepoError {}

/** A P2P peer broke the protocol: an overlong or unparseable line, or an unexpected message. */
export class ProtocolError extends RemoteUnavailableError {}

/** A P2P peer closed the connection (or the reader was abandoned) before the exchange ended. */
export class PeerClosedError extends RemoteUnavailableError {}

/** A P2P peer answered a request with `ERROR <text>`; the session stays usable (spec §1.1). */
export class PeerError extends RemoteUnavailableError {}

/** A P2P request needs a newer protocol version than the one negotiated. */
export class VersionError extends ProtocolError {}

/** A P2P session served to a client cannot go on (unframeable stream, CONNECT, NOTIFYCHANGE); the message is for the user. */
export class SessionEndedError extends RemoteUnavailableError {}

/** git-annex-shell's refusal before serving (bad arguments, wrong UUID, GIT_ANNEX_SHELL_DIRECTORY): exit status 1. */
export class ShellRefusal extends ConfigError {}

/** No git-annex new enough on PATH; the message says what to install. */
export class GitAnnexMissingError extends ConfigError {}

/** An expression that git-annex would refuse (`git annex wanted` says "Parse failure: …"). */
export class PreferredContentParseError extends ConfigError {}

/** A groupwanted expression that does not parse, met while evaluating: the whole expression acts as `present`. */
export class BadGroupWantedError extends PreferredContentParseError {}

// ---------------------------------------------------------------------------------------
// Internal failures: not ProxyErrors, so a client sees a plain 500 without their details.

/** A git command exited non-zero. */
export class GitCommandError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message)
    this.name = 'GitCommandError'
  }
}

/** The location-log writer (`git annex setpresentkey --batch`) failed. */
export class LocationLogError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }
}

/** The batch child went away before answering: the line may not have been applied. */
export class LocationLogChildGoneError extends LocationLogError {}

/** Reading the git-annex branch (`git cat-file --batch`) failed. */
export class BranchReaderError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }
}

/** The cat-file child went away mid-request: the request is safe to repeat on a fresh one. */
export class BranchReaderChildGoneError extends BranchReaderError {}

/** git-annex's journal lock (.git/annex/journal.lck) could not be taken. */
export class JournalLockError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }
}

/** A special remote's chunk= / chunksize= settings that git-annex would refuse. */
export class ChunkConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ChunkConfigError'
  }
}

/** An S3 special remote's remote.log settings that cannot be used. */
export class S3SettingsError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'S3SettingsError'
  }
}

/** `annex-proxy upload`: a file changed while it was hashed or sent. */
export class FileChangedError extends Error {}

/** `annex-proxy upload --help`: not a failure, the usage is printed. */
export class UsageRequested extends Error {}

/** `annex-proxy upload`: a hashing worker could not read or hash a file (`code`: its errno). */
export class HashError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message)
  }
}

/** The placement simulator found a state its invariants forbid (a bug, never a client's doing). */
export class InvariantViolation extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InvariantViolation'
  }
}
