// Where a key's content lives (spec §5; Annex/Locations.hs, Annex/DirHashes.hs, Utility/MD5.hs).
// Paths use '/' and are relative to the top of the repository, as `git annex examinekey
// --format='${objectpath}'` prints them: the work tree of a non-bare repository, the git
// directory itself of a bare one.
import { createHash } from 'node:crypto'
import { type Key, parentKey, serializeKey, tryParseKey } from './key.js'

/** 2 is git-annex's default; 1 when the repository has the onelevel annex difference. */
export type HashLevels = 1 | 2

const NEEDS_ESCAPE = /[&%:/]/
const ESCAPES = /[&%:/]/g

/**
 * File name for a key. git-annex applies this escaping forever (changing it would lose
 * objects), and `%` stands for `/` so that old keys with slashes in their names stay readable.
 */
export function keyFile(key: Key): string {
  const s = serializeKey(key)
  if (!NEEDS_ESCAPE.test(s)) return s
  return s.replace(ESCAPES, (c) => (c === '&' ? '&a' : c === '%' ? '&s' : c === ':' ? '&c' : '%'))
}

/** The key a file name from keyFile() names (its inverse), or undefined when it names none. */
export function keyOfFile(name: string): Key | undefined {
  const s = name.replace(/&[asc]|%/g, (c) => (c === '%' ? '/' : c === '&a' ? '&' : c === '&s' ? '%' : ':'))
  return tryParseKey(s)
}

function md5(key: Key): Buffer {
  return createHash('md5').update(serializeKey(parentKey(key)), 'utf8').digest()
}

function dirs(s: string, width: number, levels: HashLevels): string {
  return levels === 1 ? `${s.slice(0, width)}/` : `${s.slice(0, width)}/${s.slice(width, 2 * width)}/`
}

/** `abc/def/`: bare repositories, the git-annex branch and special remotes use it. */
export function hashDirLower(key: Key, levels: HashLevels = 2): string {
  return dirs(md5(key).toString('hex', 0, 3), 3, levels)
}

const MIXED = '0123456789zqjxkmvwgpfZQJXKMVWGPF'

/** `ab/cd/`: the object store of non-bare repositories. */
export function hashDirMixed(key: Key, levels: HashLevels = 2): string {
  // display_32bits_as_dir on the first little-endian word of the digest: 5-bit groups at
  // 6-bit strides, pairs swapped. Only the first 4 characters survive git-annex's `take 4`,
  // and those come from groups 0..3, so the later groups are never computed.
  const w = md5(key).readUInt32LE(0)
  const c = (x: number) => MIXED[(w >>> (6 * x)) & 31]!
  return dirs(`${c(1)}${c(0)}${c(3)}${c(2)}`, 2, levels)
}

export interface RepoLayout {
  /** A bare repository (or one whose objects use the lower-case hash, as bare ones do). */
  bare: boolean
  levels?: HashLevels
}

function gitDir(layout: RepoLayout): string {
  return layout.bare ? '' : '.git/'
}

/**
 * Where git-annex stores new content for `key` (gitAnnexLocation when nothing is present yet):
 * `.git/annex/objects/<hashdirmixed><keyFile>/<keyFile>` in a non-bare repository,
 * `annex/objects/<hashdirlower><keyFile>/<keyFile>` in a bare one (examinekey prints the
 * latter with a leading `./`).
 */
export function objectPath(key: Key, layout: RepoLayout): string {
  return objectPaths(key, layout)[0]!
}

/**
 * Every place git-annex looks for `key`, in its order: a repository converted between bare
 * and non-bare keeps old objects under the other hash, so readers must check both.
 */
export function objectPaths(key: Key, layout: RepoLayout): [string, string] {
  const f = keyFile(key)
  const base = `${gitDir(layout)}annex/objects/`
  const mixed = `${base}${hashDirMixed(key, layout.levels)}${f}/${f}`
  const lower = `${base}${hashDirLower(key, layout.levels)}${f}/${f}`
  return layout.bare ? [lower, mixed] : [mixed, lower]
}

/**
 * The partial download/upload of `key` (gitAnnexTmpObjectLocation): its size is the offset
 * a resumed transfer continues from (spec §5).
 */
export function tmpPath(key: Key, layout: Pick<RepoLayout, 'bare'>): string {
  return `${gitDir(layout)}annex/tmp/${keyFile(key)}`
}
