// Parses the captured client↔server exchanges in test/fixtures/spec-transcripts/*.txt into
// request/response vectors, so tests replay what the reference really answered.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PROJECT_ROOT } from './annex.js'

export interface Exchange {
  readonly section: string
  readonly note: string
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string>
  /** undefined when the capture only gives a byte count. */
  readonly body: Buffer | undefined
  /** The response status, or undefined when the reference never answered. */
  readonly status: number | undefined
  readonly responseHeaders: Record<string, string>
  readonly responseBody: string | undefined
}

export function transcriptPath(name: string): string {
  return join(PROJECT_ROOT, 'test', 'fixtures', 'spec-transcripts', name)
}

export function parseTranscript(name: string): Exchange[] {
  const lines = readFileSync(transcriptPath(name), 'utf8').split('\n')
  const out: Exchange[] = []
  let section = ''
  let note = ''
  let cur: {
    method?: string
    path?: string
    headers: Record<string, string>
    body?: Buffer | undefined
    bodyLines: string[]
    status?: number | undefined
    responseHeaders: Record<string, string>
    responseBody?: string | undefined
    keeplocked: boolean
    answered: boolean
  } | undefined
  const flush = () => {
    if (cur?.method && cur.answered) {
      out.push({
        section,
        note,
        method: cur.method,
        path: cur.path!,
        headers: cur.headers,
        body: cur.keeplocked ? Buffer.from(cur.bodyLines.map((l) => `${l}\n`).join('')) : cur.body,
        status: cur.status,
        responseHeaders: cur.responseHeaders,
        responseBody: cur.responseBody,
      })
    }
    cur = undefined
  }
  for (const line of lines) {
    let m: RegExpExecArray | null
    if ((m = /^## ([A-Z])\. /.exec(line))) {
      flush()
      section = m[1]!
    } else if ((m = /^## (?:curl: )?(.*)$/.exec(line))) {
      flush()
      note = m[1]!
    } else if (/^--- #\d+/.test(line)) {
      // A keeplocked exchange is announced once before its full block: keep the full one.
      if (/request started/.test(line)) continue
      flush()
      cur = { headers: {}, bodyLines: [], responseHeaders: {}, keeplocked: false, answered: false }
    } else if (cur && (m = /^> (GET|POST|HEAD|PUT|DELETE|PATCH) (\S+)$/.exec(line))) {
      cur.method = m[1]!
      cur.path = m[2]!
    } else if (cur && (m = /^> body: (.*)$/.exec(line))) {
      const v = m[1]!
      if (v === '(empty)') cur.body = Buffer.alloc(0)
      else if (v.startsWith('"')) cur.body = Buffer.from(JSON.parse(v.replace(/ \(\d+ bytes\)$/, '')) as string, 'utf8')
      else cur.body = undefined
    } else if (cur && (m = /^> ([a-z0-9-]+): (.*)$/.exec(line))) {
      cur.headers[m[1]!] = m[2]!
    } else if (cur && (m = /^ {2}>> \+[\d.]+s body line: (.*)$/.exec(line))) {
      cur.keeplocked = true
      cur.bodyLines.push(m[1]!)
    } else if (cur && /request body ended/.test(line)) {
      cur.keeplocked = true
    } else if (cur && (m = /^< (\d{3}) /.exec(line))) {
      cur.status = Number(m[1])
      cur.answered = true
    } else if (cur && /^< \(no response/.test(line)) {
      cur.status = undefined
      cur.answered = true
    } else if (cur && (m = /^< body: (.*)$/.exec(line))) {
      const v = m[1]!
      cur.responseBody = v === '(empty)' ? '' : v.startsWith('"') ? (JSON.parse(v.replace(/ \(\d+ bytes\)$/, '')) as string) : undefined
    } else if (cur && (m = /^< ([a-z0-9-]+): (.*)$/.exec(line))) {
      cur.responseHeaders[m[1]!] = m[2]!
    }
  }
  flush()
  return out
}
