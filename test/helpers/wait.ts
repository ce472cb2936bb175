// Waits for tests: every one has a deadline and says what it waited for, so a test on a
// busy machine either sees the condition or fails with a sentence, never hangs or guesses.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs'

/**
 * Polls `check` until it returns something other than undefined/false, every `everyMs`,
 * up to `ms`; resolves with that value, or rejects saying what was waited for.
 */
export async function waitUntil<T>(what: string, ms: number, check: () => T | undefined | false | Promise<T | undefined | false>, everyMs = 25): Promise<T> {
  const t0 = performance.now()
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== false) return v
    if (performance.now() - t0 > ms) throw new Error(`gave up after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** `pid` and every process beneath it (Linux /proc), parents first. */
export function processTree(pid: number): number[] {
  const out: number[] = []
  const todo = [pid]
  while (todo.length > 0) {
    const p = todo.shift()!
    out.push(p)
    let tasks: string[]
    try {
      tasks = readdirSync(`/proc/${p}/task`)
    } catch {
      continue
    }
    for (const tid of tasks) {
      try {
        for (const c of readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim() !== '') todo.push(Number(c))
      } catch {
        // The thread ended meanwhile.
      }
    }
  }
  return out
}

/** What each open file descriptor of `pid` and the processes beneath it points at right now (Linux /proc). */
function openFiles(pid: number): string[] {
  const out: string[] = []
  for (const p of processTree(pid)) {
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${p}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      try {
        out.push(readlinkSync(`/proc/${p}/fd/${fd}`))
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return out
}

/** TCP ports on which `pid` or a process beneath it listens right now (Linux /proc). */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>()
  for (const target of openFiles(pid)) {
    const m = /^socket:\[(\d+)\]$/.exec(target)
    if (m) inodes.add(m[1]!)
  }
  const ports: number[] = []
  for (const table of ['tcp', 'tcp6']) {
    let text: string
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, the inode is the 10th field.
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16))
    }
  }
  return ports
}

/** Whether `pid` or a process beneath it has `path` open right now (Linux /proc). */
export function holdsOpen(pid: number, path: string): boolean {
  return openFiles(pid).includes(path)
}

/**
 * Whether `pid` or a process beneath it holds a POSIX (fcntl) lock on `path` right now
 * (Linux /proc/locks, matched by inode): what git-annex takes on a key's `.lck` file
 * while it keeps the content locked. False when `path` does not exist.
 */
export function holdsLock(pid: number, path: string): boolean {
  let ino: number
  try {
    ino = statSync(path).ino
  } catch {
    return false
  }
  const tree = new Set(processTree(pid))
  for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
    // "1: POSIX  ADVISORY  READ 18945 fe:00:2507501 0 EOF" (blocked waiters start "1: -> ").
    const f = line.trim().split(/\s+/)
    if (f[1] === '->') continue
    const owner = Number(f[4])
    const inode = Number(f[5]?.split(':')[2])
    if (tree.has(owner) && inode === ino) return true
  }
  return false
}
