// Runs `annex-proxy upload` as a user would (the real CLI, a child process) and reads its
// --json lines; builds file trees with awkward names.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { PROJECT_ROOT, gitEnv } from '../helpers/annex.js'
import type { FileResult } from '../../src/upload/uploader.js'

export const CLI = join(PROJECT_ROOT, 'dist/src/cli/main.js')

export interface UploadRun {
  readonly child: ChildProcess
  /** Results so far (complete once `done` resolves). */
  readonly results: FileResult[]
  /** Resolves when `n` results have been printed (or rejects when the process ended first). */
  until(n: number, timeoutMs: number): Promise<void>
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>
}

export function startUpload(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): UploadRun {
  const child = spawn(process.execPath, [CLI, 'upload', '--json', ...args], { cwd, env: { ...gitEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const results: FileResult[] = []
  const waiters: Array<{ n: number; resolve: () => void }> = []
  let buf = ''
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      results.push(JSON.parse(buf.slice(0, i)) as FileResult)
      buf = buf.slice(i + 1)
    }
    for (const w of [...waiters]) if (results.length >= w.n) w.resolve()
  })
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stderr })),
  )
  return {
    child,
    results,
    done,
    until(n, timeoutMs) {
      if (results.length >= n) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`waited ${timeoutMs} ms for ${n} upload results, got ${results.length}: ${stderr}`)), timeoutMs)
        const w = {
          n,
          resolve: () => {
            clearTimeout(timer)
            resolve()
          },
        }
        waiters.push(w)
        void done.then(() => {
          clearTimeout(timer)
          if (results.length >= n) resolve()
          else reject(new Error(`upload ended with ${results.length} of ${n} results: ${stderr}`))
        })
      })
    },
  }
}

/** Runs an upload to its end with a deadline; kills it if it overruns. */
export async function upload(cwd: string, args: string[], timeoutMs = 300_000, env: NodeJS.ProcessEnv = {}) {
  const run = startUpload(cwd, args, env)
  const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs)
  const r = await run.done
  clearTimeout(timer)
  if (r.signal === 'SIGKILL') throw new Error(`upload ${args.join(' ')} did not finish in ${timeoutMs} ms: ${r.stderr}`)
  return { ...r, results: run.results }
}

const NAMES = ['data', 'Résumé final', 'naïve café', '日本語のファイル', 'emoji 🎉 party', 'with  two spaces', 'Ärger über Öl', 'x']
const EXTS = ['.bin', '.tar.gz', '.JPEG', '', '.txt', '.jpeg.x', '.ñú', '.toolongext', '.a-b', '..gz']

/** `count` files under `root` with sizes from 1 byte up, in nested directories; `big` are extra large files. Returns relative names. */
export async function makeTree(root: string, count: number, big: readonly number[] = []): Promise<string[]> {
  const names: string[] = []
  for (let i = 0; i < count; i++) {
    const dir = i % 3 === 0 ? '' : i % 3 === 1 ? 'sub dir/' : 'sub dir/nested ñ/'
    const base = `${NAMES[i % NAMES.length]} ${i}${EXTS[i % EXTS.length]}`
    const name = i === 5 ? `.hidden ${i}.txt` : `${dir}${base}`
    const size = i < big.length ? big[i]! : i === big.length ? 1 : 1 + ((i * 7919) % 65_536)
    await mkdir(dirname(join(root, name)), { recursive: true })
    await writeFile(join(root, name), randomBytes(size))
    names.push(name)
  }
  return names
}
