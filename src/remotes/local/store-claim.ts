// One writer per key's temp file across processes. Several annex-proxy processes may serve
// one repository at once (p2pstdio sessions over ssh beside the HTTP server), and two
// uploads of one key would both write `.git/annex/tmp/<key>`: each verifies the bytes it
// received, not the file, so interleaved writes could commit a file neither sent. git-annex
// guards this with an fcntl lock, which Node cannot take; a claim file created with link()
// (atomic, fails if it exists) naming the owner's pid and boot does the same here. A claim
// whose owner is gone (crashed) is taken over by moving it aside and checking that what was
// moved is the dead one; a live claim moved by mistake is put back.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { link, mkdir, rename, unlink, writeFile } from 'node:fs/promises'
import { openRegularForReading } from './safe-fs.js'
import { join } from 'node:path'

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return 'unknown'
  }
}

const BOOT = bootId()

function alive(claim: string): boolean {
  const [pid, boot] = claim.split('\n')
  if (boot !== BOOT || !pid || !/^[0-9]+$/.test(pid)) return false
  try {
    process.kill(Number(pid), 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A claim's text; never through a symlink or from a FIFO planted in its place (UnsafePathError). */
async function read(p: string): Promise<string | undefined> {
  const fh = await openRegularForReading(p).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)))
  if (!fh) return undefined
  try {
    return await fh.readFile('utf8')
  } finally {
    await fh.close()
  }
}

export interface Claim {
  release(): Promise<void>
}

/**
 * Claims the right to write key `id`'s temp file; undefined when another live process holds
 * it. `dir`: the repository's claims folder (.git/annex/annex-proxy/claims).
 */
export async function claimStore(dir: string, id: string): Promise<Claim | undefined> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, id)
  const mine = `${process.pid}\n${BOOT}\n${randomBytes(8).toString('hex')}\n`
  const draft = join(dir, `.${id}.${randomBytes(8).toString('hex')}`)
  await writeFile(draft, mine, { flag: 'wx' })
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(draft, path)
        return {
          release: async () => {
            // Only our own claim: a stale-claim takeover may have replaced it after a crash-like pause.
            if ((await read(path)) === mine) await unlink(path).catch(() => undefined)
          },
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      }
      const held = await read(path)
      if (held === undefined) continue
      if (alive(held)) return undefined
      const aside = join(dir, `.${id}.dead.${randomBytes(8).toString('hex')}`)
      try {
        await rename(path, aside)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw e
      }
      const moved = await read(aside)
      if (moved !== held && moved !== undefined && alive(moved)) {
        // Someone claimed it between our read and the move: theirs goes back.
        await link(aside, path).catch(() => undefined)
        await unlink(aside).catch(() => undefined)
        return undefined
      }
      await unlink(aside).catch(() => undefined)
    }
    return undefined
  } finally {
    await unlink(draft).catch(() => undefined)
  }
}
