// A node served on its own (a client's `--to origin-<node>`, a proxied remote), with the
// same room accounting as cluster uploads: an upload is admitted only when the node's
// maxsize allows the key counting every upload in flight to it (through this gateway or any
// of its fleet), and its size stays reserved until the upload has been logged. Without
// this, content sent to a node directly was invisible to cluster placement until logged,
// and could overfill the node itself.
import type { Readable } from 'node:stream'
import type { Key } from '../keys/key.js'
import { Delegating } from '../remotes/delegating.js'
import type { Op, Remote, StoreOp, StoreStart, Stored } from '../remotes/remote.js'

export interface Admission {
  /**
   * Room for `key` on the node. With `reserve`, its size counts as in flight until the
   * returned release; without, only checked. DiskFullError when there is none.
   */
  admit(key: Key, op: Op, reserve: boolean): Promise<{ release(): Promise<void> }>
}

/** A view made per request: the node inside belongs to the gateway, which closes it. */
export class Reserved extends Delegating {
  constructor(
    inner: Remote,
    private readonly admission: Admission,
  ) {
    super(inner, 'view')
  }

  /** Refused up front when there is no room, so the client does not send the body in vain. */
  protected override async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    const start = await this.inner.startStore(key, op)
    if (start.kind === 'present') return start
    const checked = await this.admission.admit(key, op, false)
    await checked.release()
    return start
  }

  protected override async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    let reservation: { release(): Promise<void> }
    try {
      reservation = await this.admission.admit(key, op, true)
    } catch (err) {
      // Refused before reading: RemoteBase drains the body, so the client gets the answer now.
      throw err
    }
    try {
      // The inner store logs the copy before it returns: released after, its bytes are
      // never counted neither reserved nor logged.
      return await this.inner.store(key, body, offset, op)
    } finally {
      await reservation.release().catch((err: unknown) => op.log.warn({ err }, 'could not release a placement reservation'))
    }
  }
}
