// A proxied remote as the gateway serves it (spec §3.5, §7.3): every operation goes to
// the remote, and what changed is recorded in the gateway's own location log — stored
// content (and plus UUIDs) present, removed content absent. ALREADY-HAVE is not logged.
import type { Key } from '../keys/key.js'
import type { Capability, Lock, Op, Removed, Remote, Retrieved, StoreStart, Stored, Uuid } from './remote.js'

export type Record = (key: Key, uuids: readonly Uuid[], present: boolean) => Promise<void>

export class Recorded implements Remote {
  constructor(
    private readonly inner: Remote,
    private readonly record: Record,
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
  async store(key: Key, body: Parameters<Remote['store']>[1], offset: number, op: Parameters<Remote['store']>[3]): Promise<Stored> {
    return this.logged(key, await this.inner.store(key, body, offset, op))
  }
  async storePresent(key: Key, op: Op): Promise<Stored> {
    return this.logged(key, await this.inner.storePresent(key, op))
  }
  async remove(key: Key, op: Op): Promise<Removed> {
    return this.unlogged(key, await this.inner.remove(key, op))
  }
  async removeBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.unlogged(key, await this.inner.removeBefore(key, deadline, op))
  }
  timestamp(op: Op): Promise<number> {
    return this.inner.timestamp(op)
  }
  lock(key: Key, op: Op): Promise<Lock | undefined> {
    return this.inner.lock(key, op)
  }
  close(): Promise<void> {
    return this.inner.close()
  }

  private async logged(key: Key, s: Stored): Promise<Stored> {
    if (s.stored) await this.record(key, [this.inner.uuid, ...s.plusUuids], true)
    return s
  }
  private async unlogged(key: Key, r: Removed): Promise<Removed> {
    if (r.removed) await this.record(key, [this.inner.uuid, ...r.plusUuids], false)
    return r
  }
}
