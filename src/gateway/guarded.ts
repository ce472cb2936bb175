// A node as the gateway serves it, with content holds and removes coordinated through the
// placement coordinator: a lock taken through any gateway of a fleet (or any request of
// this one) keeps a remove through any other from starting, and a remove in progress keeps
// new locks off, even for nodes that enforce neither themselves and across the moment
// between a node's own check and its action.
import { LockedError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { serializeKey } from '../keys/key.js'
import type { Coordinator } from '../placement/coordinator.js'
import type { Capability, Lock, Op, Removed, Remote, Retrieved, StoreStart, Stored, Uuid } from '../remotes/remote.js'

export class Guarded implements Remote {
  constructor(
    readonly inner: Remote,
    private readonly coordinator: Coordinator,
  ) {}

  get uuid(): Uuid {
    return this.inner.uuid
  }
  get capabilities(): ReadonlySet<Capability> {
    return this.inner.capabilities
  }
  checkPresent(key: Key, op: Op): Promise<boolean> {
    return this.inner.checkPresent(key, op)
  }
  retrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    return this.inner.retrieve(key, offset, op)
  }
  startStore(key: Key, op: Op): Promise<StoreStart> {
    return this.inner.startStore(key, op)
  }
  store(key: Key, body: Parameters<Remote['store']>[1], offset: number, op: Parameters<Remote['store']>[3]): Promise<Stored> {
    return this.inner.store(key, body, offset, op)
  }
  storePresent(key: Key, op: Op): Promise<Stored> {
    return this.inner.storePresent(key, op)
  }
  timestamp(op: Op): Promise<number> {
    return this.inner.timestamp(op)
  }

  remove(key: Key, op: Op): Promise<Removed> {
    return this.excluding(key, () => this.inner.remove(key, op))
  }
  removeBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
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

  async lock(key: Key, op: Op): Promise<Lock | undefined> {
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

  close(): Promise<void> {
    return this.inner.close()
  }
}
