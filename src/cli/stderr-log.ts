// A Logger for commands whose stdout is a protocol (p2pstdio): one plain line per message
// on stderr, which ssh shows the user as it shows git-annex-shell's, at or above a level.
import { format } from 'node:util'
import type { Logger } from '../remotes/remote.js'

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const
type Level = keyof typeof LEVELS

function levelOf(name: string): Level {
  const n = name.toLowerCase()
  if (n === 'trace') return 'debug'
  if (n === 'fatal') return 'error'
  return n in LEVELS ? (n as Level) : 'warn'
}

function describe(obj: object | string, msg: string | undefined): string {
  if (typeof obj === 'string') return obj
  const o = obj as Record<string, unknown>
  const parts: string[] = []
  if (msg) parts.push(msg)
  for (const [k, v] of Object.entries(o)) {
    if (k === 'err') {
      const e = v as { message?: unknown } | undefined
      parts.push(e && typeof e.message === 'string' ? e.message : format('%s', v))
    } else parts.push(`${k}=${typeof v === 'string' ? v : format('%j', v)}`)
  }
  return parts.join(' ')
}

export function stderrLogger(level: string, write: (line: string) => void = (l) => void process.stderr.write(l)): Logger {
  const min = LEVELS[levelOf(level)]
  const at =
    (l: Exclude<Level, 'silent'>) =>
    (obj: object | string, msg?: string): void => {
      if (LEVELS[l] < min) return
      write(`annex-proxy: ${describe(obj, msg)}\n`)
    }
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}
