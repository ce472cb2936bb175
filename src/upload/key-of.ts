// The key `git annex add` gives a file: BACKEND-s<size>--<hex digest>[<extension>] (spec §5).
// The extension rule is git-annex's selectExtension (Backend/Utilities.hs, upstream): at most
// `maxExtensions` dot-separated parts from the end of the file name's extensions, each at most
// `maxExtensionLength` bytes of ASCII letters/digits or non-ASCII bytes, stopping at the first
// part that is too long; a leading dot of the name does not start an extension.
import { ConfigError } from '../errors.js'
import { hashAlgorithm, type HashAlgorithm } from '../keys/backend.js'
import { hasExtensionVariant, makeKey, type Key } from '../keys/key.js'

/** git-annex's defaults: annex.maxextensionlength 4 ("jpeg"), annex.maxextensions 2 ("tar.gz"). */
export interface ExtensionRules {
  readonly maxExtensionLength: number
  readonly maxExtensions: number
}

export const DEFAULT_EXTENSION_RULES: ExtensionRules = Object.freeze({ maxExtensionLength: 4, maxExtensions: 2 })

function validByte(c: number): boolean {
  // isAlphaNum on ASCII, '.', and every byte above 127 (UTF-8 or any other encoding).
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 46 || c > 127
}

/** The extension (with its leading dot, or '') git-annex adds to an E backend's key for a file named `fileName`. */
export function selectExtension(fileName: string, rules: ExtensionRules = DEFAULT_EXTENSION_RULES): string {
  const base = Buffer.from(fileName.slice(fileName.lastIndexOf('/') + 1), 'utf8')
  let start = 0
  while (start < base.length && base[start] === 46) start++
  const name = base.subarray(start)
  // takeExtensions: from the name's first dot on.
  const dot = name.indexOf(46)
  if (dot < 0) return ''
  const parts: Buffer[] = []
  let from = dot + 1
  for (;;) {
    const next = name.indexOf(46, from)
    parts.push(name.subarray(from, next < 0 ? name.length : next))
    if (next < 0) break
    from = next + 1
  }
  const picked: Buffer[] = []
  for (let i = parts.length - 1; i >= 0; i--) {
    const p = parts[i]!
    if (p.length > rules.maxExtensionLength) break
    if (picked.length < rules.maxExtensions && p.every(validByte)) picked.push(p)
  }
  const kept = picked.reverse().filter((p) => p.length > 0)
  if (kept.length === 0) return ''
  return kept.map((p) => `.${p.toString('utf8')}`).join('')
}

/** A backend the server verifies: a hash backend, with or without its E variant. */
export interface UploadBackend {
  readonly name: string
  readonly algorithm: HashAlgorithm
  readonly withExtension: boolean
}

export function parseBackend(name: string): UploadBackend {
  const algorithm = hashAlgorithm(name)
  if (algorithm === undefined) {
    throw new ConfigError(`--backend ${name}: not a hash backend (SHA256E, SHA256, SHA512E, BLAKE2B256E, SKEIN512E, MD5E, …): only content whose checksum the server verifies can be uploaded`)
  }
  return { name, algorithm, withExtension: name !== algorithm && hasExtensionVariant(name) }
}

export function keyOf(backend: UploadBackend, size: number, hexDigest: string, fileName: string, rules: ExtensionRules = DEFAULT_EXTENSION_RULES): Key {
  const ext = backend.withExtension ? selectExtension(fileName, rules) : ''
  return makeKey({ backend: backend.name, size, name: hexDigest + ext })
}
