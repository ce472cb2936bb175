// Runs in a worker thread: digests of whole files (read here, in 1 MiB blocks) or of buffers
// handed over, so that hashing never holds the uploader's event loop.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { parentPort } from 'node:worker_threads'
import { createHasher, type HashAlgorithm, type HasherKind } from '../keys/backend.js'

export type HashRequest =
  | { readonly id: number; readonly algorithm: HashAlgorithm; readonly hasher: HasherKind; readonly path: string }
  | { readonly id: number; readonly algorithm: HashAlgorithm; readonly hasher: HasherKind; readonly data: Uint8Array }

export type HashReply =
  | { readonly id: number; readonly hex: string; readonly size: number; readonly mtimeMs: number }
  | { readonly id: number; readonly error: string; readonly code?: string }

const BLOCK = 1024 * 1024
const block = Buffer.allocUnsafe(BLOCK)

async function digest(req: HashRequest): Promise<HashReply> {
  const h = await createHasher(req.algorithm, req.hasher)
  if ('data' in req) {
    h.update(req.data)
    return { id: req.id, hex: h.digest(), size: req.data.length, mtimeMs: 0 }
  }
  const fd = openSync(req.path, 'r')
  try {
    const st = fstatSync(fd)
    let size = 0
    for (;;) {
      const n = readSync(fd, block, 0, BLOCK, null)
      if (n === 0) break
      h.update(block.subarray(0, n))
      size += n
    }
    return { id: req.id, hex: h.digest(), size, mtimeMs: st.mtimeMs }
  } finally {
    closeSync(fd)
  }
}

parentPort!.on('message', (req: HashRequest) => {
  digest(req).then(
    (r) => parentPort!.postMessage(r),
    (e: unknown) => {
      const err = e as NodeJS.ErrnoException
      parentPort!.postMessage({ id: req.id, error: err?.message ?? String(e), ...(err?.code ? { code: err.code } : {}) })
    },
  )
})
