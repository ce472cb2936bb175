// Where a key's content lives (spec §5): hash directories and the keyFile name.
import { createHash } from 'node:crypto'
import { type Key, parentKey, serializeKey } from './key.js'

/** File name for a key: escapes the characters that cannot appear in a path component. */
export function keyFile(key: Key): string {
  const s = serializeKey(key)
  if (!/[&%:/]/.test(s)) return s
  return s.replace(/[&%:/]/g, (c) => (c === '&' ? '&a' : c === '%' ? '&s' : c === ':' ? '&c' : '%'))
}

function md5(key: Key): Buffer {
  return createHash('md5').update(serializeKey(parentKey(key)), 'utf8').digest()
}

/** `abc/def/` — used by bare repositories, the git-annex branch and directory special remotes. */
export function hashDirLower(key: Key): string {
  const h = md5(key).toString('hex')
  return `${h.slice(0, 3)}/${h.slice(3, 6)}/`
}

const MIXED = '0123456789zqjxkmvwgpfZQJXKMVWGPF'

/** `ab/cd/` — used by non-bare repositories' object store. */
export function hashDirMixed(key: Key): string {
  const w = md5(key).readUInt32LE(0)
  const c: string[] = []
  for (let x = 0; x < 8; x++) c.push(MIXED[(w >>> (6 * x)) & 31]!)
  // Pairs are swapped: c1 c0 c3 c2 …
  const s = `${c[1]}${c[0]}${c[3]}${c[2]}`
  return `${s.slice(0, 2)}/${s.slice(2, 4)}/`
}
