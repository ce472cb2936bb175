// A proxied remote as the gateway serves it (spec §3.5, §7.3): every operation goes to
// the remote, and what changed is recorded in the gateway's own location log — stored
// content (and plus UUIDs) present, removed content absent. ALREADY-HAVE is not logged.
//
// A view, made per request: its lifecycle covers its own calls (close() drains them,
// destroy() aborts them); the remote inside belongs to the gateway, which closes it.
import type { Readable } from 'node:stream'
import type { Key } from '../keys/key.js'
import { Delegating } from './delegating.js'
import type { Op, Removed, Remote, StoreOp, Stored, Uuid } from './remote.js'

export type Record = (key: Key, uuids: readonly Uuid[], present: boolean) => Promise<void>

export class Recorded extends Delegating {
  constructor(
    inner: Remote,
    private readonly record: Record,
  ) {
    super(inner, 'view')
  }

  protected override async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    return this.logged(key, await this.inner.store(key, body, offset, op))
  }
  protected override async doStorePresent(key: Key, op: Op): Promise<Stored> {
    return this.logged(key, await this.inner.storePresent(key, op))
  }
  protected override async doRemove(key: Key, op: Op): Promise<Removed> {
    return this.unlogged(key, await this.inner.remove(key, op))
  }
  protected override async doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.unlogged(key, await this.inner.removeBefore(key, deadline, op))
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
