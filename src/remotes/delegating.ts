// The shape every wrapper remote shares (Reserved, StagingReserved, ChunkCached, Guarded,
// Recorded): each call goes to the remote inside, so a wrapper overrides only the calls it
// changes. RemoteBase still gives the wrapper its own lifecycle (refusal after close, its
// calls drained or aborted), whatever the remote inside does.
import type { Readable } from 'node:stream'
import type { Key } from '../keys/key.js'
import { RemoteBase, type Capability, type Lock, type Op, type Removed, type Remote, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid } from './remote.js'

/**
 * Who closes the remote inside: `owned` — the wrapper does, on its own close() or
 * destroy(); `view` — a wrapper made per request around a remote the gateway keeps and
 * closes itself, so closing the view ends only its own calls.
 */
export type Inside = 'owned' | 'view'

export abstract class Delegating extends RemoteBase {
  constructor(
    readonly inner: Remote,
    private readonly inside: Inside,
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
  protected async doClose(): Promise<void> {
    if (this.inside === 'owned') await this.inner.close()
  }
  protected override async doDestroy(err: Error | undefined): Promise<void> {
    if (this.inside === 'owned') await this.inner.destroy(err)
  }
}
