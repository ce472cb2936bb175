// What a small file costs a cluster gateway, without HTTP or a client: N files of 16 KiB stored
// through a real Gateway (gw + nodes n1..n3 as test/gateway/fixture.ts builds them) into its
// cluster, --jobs at a time, each answered after the gateway's location log is committed (the
// server's default --location-log-commit answer). Prints files/s, the CPU of this process and of
// its children (git, the journal-lock holder; reaped ones, close included) per file, and the
// peak RSS of the children and of the tree (sampled every 20 ms unless --no-rss, whose /proc
// walk costs CPU of its own). Run against two builds to compare:
// npx tsc -p . && node dist/bench/micro/cluster-small-files.js [--files 300] [--jobs 4] [--no-rss]
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { Readable } from 'node:stream'
import { Gateway } from '../../src/gateway/gateway.js'
import { parseKey } from '../../src/keys/key.js'
import { makeGateway } from '../../test/gateway/fixture.js'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const FILES = arg('--files', 300)
const JOBS = arg('--jobs', 4)
const RSS = !process.argv.includes('--no-rss')
const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet }

const cleanups: Array<() => unknown> = []
const t = { after: (fn: () => unknown) => void cleanups.push(fn) }

function children(pid: number): number[] {
  const out: number[] = []
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim() !== '') out.push(Number(c))
      } catch {
        // The thread ended meanwhile.
      }
    }
  } catch {
    // The process ended meanwhile.
  }
  return out
}
const rssMiB = (pid: number) => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
  } catch {
    return 0
  }
}
/** cutime + cstime of this process in ms: the CPU of the children it has reaped. */
const childCpuMs = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[13]) + Number(f[14])) * 10
}

try {
  const g = await makeGateway(t)
  const gw = await Gateway.open(g.gw, { hasher: 'wasm', log: quiet, fanoutHighWaterMark: 1 << 20, fanoutStallMs: 60_000, locationLogSettle: 'commit' })
  let peakChildren = 0
  let peakTree = 0
  const sampler = setInterval(() => {
    if (!RSS) return
    let sum = 0
    const stack = children(process.pid)
    while (stack.length > 0) {
      const p = stack.pop()!
      sum += rssMiB(p)
      stack.push(...children(p))
    }
    peakChildren = Math.max(peakChildren, sum)
    peakTree = Math.max(peakTree, sum + process.memoryUsage().rss / 2 ** 20)
  }, 20)
  const op = { signal: new AbortController().signal, log: quiet }
  const put = async (bytes: Buffer) => {
    const key = parseKey(`SHA256E-s${bytes.length}--${createHash('sha256').update(bytes).digest('hex')}.bin`)
    const r = (await gw.lookup(g.cluster))!
    const s = await r.startStore(key, op)
    await r.store(key, Readable.from([bytes]), s.kind === 'offset' ? s.offset : 0, op)
  }
  const files = Array.from({ length: FILES }, () => randomBytes(16 * 1024))
  await put(randomBytes(16 * 1024))
  const cpu0 = process.cpuUsage()
  const kids0 = childCpuMs()
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: JOBS }, async () => {
      while (next < FILES) await put(files[next++]!)
    }),
  )
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  await gw.close()
  const kids = childCpuMs() - kids0
  clearInterval(sampler)
  const per = (ms: number) => `${(ms / FILES).toFixed(2)} ms`
  console.log(
    `${FILES} files of 16 KiB, -J${JOBS}: ${(FILES / (wall / 1000)).toFixed(1)} files/s; per file: this process ${per((cpu.user + cpu.system) / 1000)}, children ${per(kids)} CPU` +
      (RSS ? `; peak RSS children ${peakChildren.toFixed(0)} MiB, tree ${peakTree.toFixed(0)} MiB` : ''),
  )
} finally {
  for (const fn of cleanups.reverse()) await fn()
}
