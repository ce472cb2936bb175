// A node as the gateway serves it, with content holds and removes coordinated through the
// placement coordinator: a lock taken through any gateway of a fleet (or any request of
// this one) keeps a remove through any other from starting, and a remove in progress keeps
// new locks off, even for nodes that enforce neither themselves and across the moment
// between a node's own check and its action.
import type { Readable } from 'node:stream'
import { LockedError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { serializeKey } from '../keys/key.js'
import type { Coordinator } from '../placement/coordinator.js'
import { RemoteBase, type Capability, type Lock, type Op, type Removed, type Remote, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid } from '../remotes/remote.js'

export class Guarded extends RemoteBase {
  constructor(
    readonly inner: Remote,
    private readonly coordinator: Coordinator,
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
  protected doStartStore(key: Key, op: Op): Promise<StoreStart> {
    return this.inner.startStore(key, op)
  }
  protected doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    return this.inner.store(key, body, offset, op)
  }
  protected doStorePresent(key: Key, op: Op): Promise<Stored> {
    return this.inner.storePresent(key, op)
  }
  protected doTimestamp(op: Op): Promise<number> {
    return this.inner.timestamp(op)
  }

  protected doRemove(key: Key, op: Op): Promise<Removed> {
    return this.excluding(key, () => this.inner.remove(key, op))
  }
  protected doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.excluding(key, () => this.inner.removeBefore(key, deadline, op))
  }

  private async excluding(key: Key, fn: () => Promise<Removed>): Promise<Removed> {
    const x = await this.coordinator.exclude(this.uuid, serializeKey(key))
    try {
      return await fn()
    } finally {
      await x.release()
    }
  }

  protected async doLock(key: Key, op: Op): Promise<Lock | undefined> {
    const hold = await this.coordinator.hold(this.uuid, serializeKey(key))
    // A remove of it is running somewhere: not lockable now, as a node answers mid-drop.
    if (!hold) return undefined
    let inner: Lock | undefined
    try {
      inner = await this.inner.lock(key, op)
    } catch (err) {
      await hold.release()
      if (err instanceof LockedError) return undefined
      throw err
    }
    if (!inner) {
      await hold.release()
      return undefined
    }
    const l = inner
    let released: Promise<void> | undefined
    return {
      release: () =>
        (released ??= (async () => {
          try {
            await l.release()
          } finally {
            await hold.release()
          }
        })()),
    }
  }

  protected doClose(): Promise<void> {
    return this.inner.close()
  }
  protected override doDestroy(err: Error | undefined): Promise<void> {
    return this.inner.destroy(err)
  }
}
