// A Remote whose every transfer puts the whole object on the gateway's disk on the way: the
// gateway's own git-annex, proxying a special remote annex-proxy does not serve natively,
// stages each upload and each download in a temp file under .git/annex (spec §4), and
// the reference does so without looking at annex.diskreserve. Here a transfer is booked
// against the gateway's reserve before it starts (with the uploads and cache writes in
// flight on the same filesystem) and refused up front when it would cross it. The same
// check guards a directory special remote's directory on upload, as git-annex's own
// directory remote does (Remote/Directory.hs checkDiskSpaceDirectory); its reads stage nothing.
import type { Readable } from 'node:stream'
import type { Key } from '../keys/key.js'
import type { DiskReserve, Reservation } from '../streams/disk-reserve.js'
import { Delegating } from './delegating.js'
import type { Op, Remote, Retrieved, StoreOp, Stored } from './remote.js'

export class StagingReserved extends Delegating {
  constructor(
    inner: Remote,
    /** annex.diskreserve of the filesystem the staging happens on. */
    private readonly reserve: DiskReserve,
    /** Whether retrieves put the object on that filesystem too (false: only stores do). */
    private readonly opts: { readonly retrieves?: boolean } = {},
  ) {
    super(inner, 'owned')
  }

  // Annex/Content.hs checkDiskSpace: the key's size, or 1 byte when it has none.
  private book(key: Key): Promise<Reservation> {
    return this.reserve.reserve(key.size ?? 1)
  }

  protected override async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    if (this.opts.retrieves === false) return this.inner.retrieve(key, offset, op)
    const r = await this.book(key)
    let got: Retrieved
    try {
      got = await this.inner.retrieve(key, offset, op)
    } catch (err) {
      r.release()
      throw err
    }
    // The staged copy lives as long as the transfer: until the body ends or is dropped.
    got.body.once('close', () => r.release())
    got.valid.then(
      () => r.release(),
      () => r.release(),
    )
    return got
  }

  protected override async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    const r = await this.book(key)
    try {
      return await this.inner.store(key, body, offset, op)
    } finally {
      r.release()
    }
  }
}
