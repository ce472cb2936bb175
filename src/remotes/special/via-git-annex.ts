// A special remote of the gateway that annex-proxy does not serve natively (rsync, webdav,
// external git-annex-remote-*, encrypted, export/import trees, legacy chunksize…), reached
// through the gateway's own git-annex: `git-annex-shell p2pstdio <gateway> <gateway-uuid>
// --uuid <remote>` (a StdioRepo), which proxies it as the reference does (spec §4), so
// whatever the reference serves is served.
//
// What the reference's special-remote proxy gets wrong is answered here instead (§4, §9.8):
// GETTIMESTAMP and REMOVE-BEFORE (it dies on them) use the gateway's monotonic clock, a
// GET of an absent key (it hangs) is answered after a CHECKPRESENT, and an upload is only
// started after a CHECKPRESENT (it never says ALREADY-HAVE). It cannot resume uploads
// (always PUT-FROM 0) nor lock content (LOCKCONTENT fails).
import { NotSupportedError } from '../../errors.js'
import type { Key } from '../../keys/key.js'
import { monotonicSeconds } from '../../annex/clock.js'
import { Readable } from 'node:stream'
import { RemoteBase, type Capability, type Lock, type Op, type Removed, type Remote, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid } from '../remote.js'

const CAPABILITIES: readonly Capability[] = ['retrieve-from-offset', 'remove-before', 'timestamp']
const NOTHING: readonly Uuid[] = Object.freeze([])

/** Owns the remote inside: closing or destroying this closes or destroys it. */
export class ViaGitAnnex extends RemoteBase {
  readonly capabilities: ReadonlySet<Capability> = new Set(CAPABILITIES)

  constructor(private readonly inner: Remote) {
    super()
  }

  get uuid(): Uuid {
    return this.inner.uuid
  }

  protected doCheckPresent(key: Key, op: Op): Promise<boolean> {
    return this.inner.checkPresent(key, op)
  }

  protected async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    if (!(await this.inner.checkPresent(key, op))) return { length: 0, body: Readable.from([], { objectMode: false }), valid: Promise.resolve(false) }
    return this.inner.retrieve(key, offset, op)
  }

  protected async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    if (await this.inner.checkPresent(key, op)) return { kind: 'present', plusUuids: NOTHING }
    return { kind: 'offset', offset: 0 }
  }

  protected doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    if (offset !== 0) return Promise.reject(new NotSupportedError('this special remote cannot resume an upload; send from offset 0'))
    return this.inner.store(key, body, 0, op)
  }

  protected doStorePresent(key: Key, op: Op): Promise<Stored> {
    return this.inner.storePresent(key, op)
  }

  protected doRemove(key: Key, op: Op): Promise<Removed> {
    return this.inner.remove(key, op)
  }

  protected async doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    if (!(monotonicSeconds() < deadline)) return { removed: false, plusUuids: NOTHING }
    return this.inner.remove(key, op)
  }

  protected async doTimestamp(_op: Op): Promise<number> {
    return monotonicSeconds()
  }

  protected async doLock(_key: Key, _op: Op): Promise<Lock | undefined> {
    throw new NotSupportedError('a special remote cannot lock content')
  }

  protected doClose(): Promise<void> {
    return this.inner.close()
  }

  protected override doDestroy(err: Error | undefined): Promise<void> {
    return this.inner.destroy(err)
  }
}
