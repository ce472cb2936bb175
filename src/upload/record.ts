// --record DIR: the uploaded files become annexed files of the local git-annex clone DIR, with
// the locations the server reported, through git-annex's own batch plumbing (setpresentkey for
// the location log, fromkey for the symlinks), so `git annex whereis` and `git annex get` work
// there at once. Cluster UUIDs are passed on like any other: git-annex logs none (a cluster's
// presence follows from its nodes').
import { spawn } from 'node:child_process'
import type { FileResult } from './uploader.js'

export interface RecordResult {
  readonly recorded: number
  readonly failures: readonly string[]
}

function batch(dir: string, args: string[], lines: string[]): Promise<{ out: string; err: string; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['annex', ...args, '--batch', '-z'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    child.stdin.on('error', () => undefined)
    child.once('error', reject)
    child.once('close', (code) => resolve({ out, err, code: code ?? 1 }))
    child.stdin.end(lines.map((l) => `${l}\0`).join(''))
  })
}

/** Records every stored or already-present file of `results` in the clone `dir`. */
export async function recordInClone(dir: string, targetUuid: string, results: readonly FileResult[]): Promise<RecordResult> {
  const done = results.filter((r) => r.result !== 'failed' && r.key !== undefined)
  if (done.length === 0) return { recorded: 0, failures: [] }
  const present: string[] = []
  const seen = new Set<string>()
  for (const r of done) {
    for (const u of [targetUuid, ...r.plusuuids]) {
      const line = `${r.key} ${u} 1`
      if (!seen.has(line)) present.push(line)
      seen.add(line)
    }
  }
  const failures: string[] = []
  const sp = await batch(dir, ['setpresentkey'], present)
  if (sp.code !== 0) failures.push(`git annex setpresentkey failed: ${sp.err.trim() || sp.out.trim()}`)
  const fk = await batch(dir, ['fromkey'], done.map((r) => `${r.key} ${r.file}`))
  if (fk.code !== 0) failures.push(`git annex fromkey failed: ${fk.err.trim() || fk.out.trim()}`)
  const ok = fk.out.split('\n').filter((l) => l.startsWith('fromkey ') && l.endsWith(' ok')).length
  return { recorded: ok, failures }
}
