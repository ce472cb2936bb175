// A git config file read without running git (git-config(1) "CONFIGURATION FILE"): what
// lets a --directory scan find 10 000 repositories' annex.uuid without 10 000 processes.
// Keys come out as `git config --list` prints them: section and variable lower-cased, a
// subsection as written. Include directives are not followed (git-annex writes what we
// read, annex.uuid and the remotes' settings, into the repository's own config).

/** Key → its values in file order (the last one is what `git config --get` answers). */
export type GitConfig = Map<string, string[]>

const isSpace = (c: string | undefined) => c === ' ' || c === '\t'
function isNameChar(c: string | undefined): boolean {
  if (c === undefined) return false
  const n = c.charCodeAt(0)
  return (n >= 97 && n <= 122) || (n >= 65 && n <= 90) || (n >= 48 && n <= 57) || n === 45
}

/** Parses `text`; undefined where git itself would refuse the file (`fatal: bad config line`). */
export function parseGitConfigFile(text: string): GitConfig | undefined {
  const out: GitConfig = new Map()
  const s = text.replace(/^\ufeff/, '')
  let i = 0
  let section: string | undefined
  const add = (key: string, value: string) => {
    const list = out.get(key)
    if (list) list.push(value)
    else out.set(key, [value])
  }
  const skipLine = () => {
    while (i < s.length && s[i] !== '\n') i++
  }
  while (i < s.length) {
    const c = s[i]!
    if (c === '\n' || c === '\r' || isSpace(c)) {
      i++
      continue
    }
    if (c === '#' || c === ';') {
      skipLine()
      continue
    }
    if (c === '[') {
      i++
      let name = ''
      while (i < s.length && (isNameChar(s[i]) || s[i] === '.')) name += s[i++]
      if (name === '') return undefined
      if (s[i] === ']') {
        i++
        // [section.sub] (deprecated): the subsection is lower-cased too.
        section = name.toLowerCase()
        continue
      }
      if (!isSpace(s[i])) return undefined
      while (isSpace(s[i])) i++
      if (s[i] !== '"') return undefined
      i++
      let sub = ''
      for (;;) {
        const d = s[i]
        if (d === undefined || d === '\n') return undefined
        i++
        if (d === '"') break
        if (d === '\\') {
          const e = s[i++]
          if (e === undefined || e === '\n') return undefined
          sub += e
        } else sub += d
      }
      if (s[i] !== ']') return undefined
      i++
      section = `${name.toLowerCase()}.${sub}`
      continue
    }
    // A variable: name [= value].
    if (!/[A-Za-z]/.test(c)) return undefined
    let name = ''
    while (isNameChar(s[i])) name += s[i++]
    while (isSpace(s[i])) i++
    // (git takes a variable before any section header as a key of its own.)
    const key = section === undefined ? name.toLowerCase() : `${section}.${name.toLowerCase()}`
    if (s[i] === undefined || s[i] === '\n' || s[i] === '\r' || s[i] === '#' || s[i] === ';') {
      // No '=': a boolean true (git config --list prints the bare key).
      add(key, 'true')
      skipLine()
      continue
    }
    if (s[i] !== '=') return undefined
    i++
    const v = readValue(s, i)
    if (!v) return undefined
    i = v.end
    add(key, v.value)
  }
  return out
}

/** A value from `i` to its end of line: quotes, escapes, continuations, trailing white space dropped. */
function readValue(s: string, i: number): { value: string; end: number } | undefined {
  let value = ''
  // Unquoted white space is kept only when something follows it on the line.
  let pendingSpace = ''
  let quoted = false
  while (isSpace(s[i])) i++
  for (;;) {
    const c = s[i]
    if (c === undefined || (c === '\n' && !quoted)) break
    if (c === '\n' && quoted) return undefined
    i++
    if (c === '\r' && s[i] === '\n' && !quoted) continue
    if (!quoted && (c === '#' || c === ';')) {
      while (i < s.length && s[i] !== '\n') i++
      break
    }
    if (!quoted && isSpace(c)) {
      if (value !== '' || pendingSpace !== '') pendingSpace += c
      continue
    }
    value += pendingSpace
    pendingSpace = ''
    if (c === '"') {
      quoted = !quoted
      continue
    }
    if (c === '\\') {
      const e = s[i++]
      if (e === '\n') continue
      if (e === '\r' && s[i] === '\n') {
        i++
        continue
      }
      if (e === 'n') value += '\n'
      else if (e === 't') value += '\t'
      else if (e === 'b') value += '\b'
      else if (e === '"' || e === '\\') value += e
      else return undefined
      continue
    }
    value += c
  }
  if (quoted) return undefined
  return { value, end: i }
}

/**
 * `git config --list -z` output → the same map as parseGitConfigFile gives (a bare `key`
 * means true; multi-valued keys keep every value, in order).
 */
export function parseGitConfigList(z: string): GitConfig {
  const m: GitConfig = new Map()
  for (const entry of z.split('\0')) {
    if (entry === '') continue
    const nl = entry.indexOf('\n')
    const key = nl < 0 ? entry : entry.slice(0, nl)
    const value = nl < 0 ? 'true' : entry.slice(nl + 1)
    const list = m.get(key)
    if (list) list.push(value)
    else m.set(key, [value])
  }
  return m
}

/** The value `git config --get key` answers (the last one), or undefined. */
export function lastValue(cfg: ReadonlyMap<string, readonly string[]>, key: string): string | undefined {
  return cfg.get(key)?.at(-1)
}
