// A node served on its own (a client's `--to origin-<node>`, a proxied remote), with the
// same room accounting as cluster uploads: an upload is admitted only when the node's
// maxsize allows the key counting every upload in flight to it (through this gateway or any
// of its fleet), and its size stays reserved until the upload has been logged. Without
// this, content sent to a node directly was invisible to cluster placement until logged,
// and could overfill the node itself.
import type { Readable } from 'node:stream'
import type { Key } from '../keys/key.js'
import { RemoteBase, type Capability, type Lock, type Op, type Removed, type Remote, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid } from '../remotes/remote.js'

export interface Admission {
  /**
   * Room for `key` on the node. With `reserve`, its size counts as in flight until the
   * returned release; without, only checked. DiskFullError when there is none.
   */
  admit(key: Key, op: Op, reserve: boolean): Promise<{ release(): Promise<void> }>
}

export class Reserved extends RemoteBase {
  constructor(
    readonly inner: Remote,
    private readonly admission: Admission,
  ) {
    super()
  }

  get uuid(): Uuid {
    return this.inner.uuid
  }
  get capabilities(): ReadonlySet<Capability> {
    return this.inner.capabilities
  }
  protected doCheckPresent(key: Key, op: Op): Promise<boolean> {
    return this.inner.checkPresent(key, op)
  }
  protected doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    return this.inner.retrieve(key, offset, op)
  }

  /** Refused up front when there is no room, so the client does not send the body in vain. */
  protected async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    const start = await this.inner.startStore(key, op)
    if (start.kind === 'present') return start
    const checked = await this.admission.admit(key, op, false)
    await checked.release()
    return start
  }

  protected async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
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

  protected doStorePresent(key: Key, op: Op): Promise<Stored> {
    return this.inner.storePresent(key, op)
  }
  protected doRemove(key: Key, op: Op): Promise<Removed> {
    return this.inner.remove(key, op)
  }
  protected doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.inner.removeBefore(key, deadline, op)
  }
  protected doTimestamp(op: Op): Promise<number> {
    return this.inner.timestamp(op)
  }
  protected doLock(key: Key, op: Op): Promise<Lock | undefined> {
    return this.inner.lock(key, op)
  }
  /** A view made per request: the node inside belongs to the gateway, which closes it. */
  protected async doClose(): Promise<void> {}
}
