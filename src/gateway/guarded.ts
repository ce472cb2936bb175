// A node as the gateway serves it, with content holds and removes coordinated through the
// placement coordinator: a lock taken through any gateway of a fleet (or any request of
// this one) keeps a remove through any other from starting, and a remove in progress keeps
// new locks off, even for nodes that enforce neither themselves and across the moment
// between a node's own check and its action.
import { LockedError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { serializeKey } from '../keys/key.js'
import type { Coordinator } from '../placement/coordinator.js'
import { Delegating } from '../remotes/delegating.js'
import type { Lock, Op, Removed, Remote } from '../remotes/remote.js'

export class Guarded extends Delegating {
  constructor(
    inner: Remote,
    private readonly coordinator: Coordinator,
  ) {
    super(inner, 'owned')
  }

  protected override doRemove(key: Key, op: Op): Promise<Removed> {
    return this.excluding(key, () => this.inner.remove(key, op))
  }
  protected override doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
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

  protected override async doLock(key: Key, op: Op): Promise<Lock | undefined> {
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
}
