// Data sizes as git-annex reads and shows them (Utility/DataUnits.hs), and the Haskell
// `reads` of a number both rest on. One parser for every size text we take from a user
// or a repository: annex.diskreserve, preferred-content `largerthan=`, maxsize.log.
// Checked against real git-annex in test/annex/data-units.test.ts.

interface Unit {
  readonly size: number
  readonly abbrev: string
  readonly name: string
}

const p10 = (n: number) => 1000 ** n
const p2 = (n: number) => 2 ** (10 * n)

// Storage units are powers of ten, "committee" units powers of two, bandwidth units bits.
// The lookup order matters ("mb" is a megabyte, not a megabit), so the lists keep
// git-annex's order.
export const STORAGE_UNITS: readonly Unit[] = [
  { size: p10(10), abbrev: 'QB', name: 'quettabyte' },
  { size: p10(9), abbrev: 'RB', name: 'ronnabyte' },
  { size: p10(8), abbrev: 'YB', name: 'yottabyte' },
  { size: p10(7), abbrev: 'ZB', name: 'zettabyte' },
  { size: p10(6), abbrev: 'EB', name: 'exabyte' },
  { size: p10(5), abbrev: 'PB', name: 'petabyte' },
  { size: p10(4), abbrev: 'TB', name: 'terabyte' },
  { size: p10(3), abbrev: 'GB', name: 'gigabyte' },
  { size: p10(2), abbrev: 'MB', name: 'megabyte' },
  { size: p10(1), abbrev: 'kB', name: 'kilobyte' },
  { size: 1, abbrev: 'B', name: 'byte' },
]
const COMMITTEE_UNITS: readonly Unit[] = [
  { size: p2(8), abbrev: 'YiB', name: 'yobibyte' },
  { size: p2(7), abbrev: 'ZiB', name: 'zebibyte' },
  { size: p2(6), abbrev: 'EiB', name: 'exbibyte' },
  { size: p2(5), abbrev: 'PiB', name: 'pebibyte' },
  { size: p2(4), abbrev: 'TiB', name: 'tebibyte' },
  { size: p2(3), abbrev: 'GiB', name: 'gibibyte' },
  { size: p2(2), abbrev: 'MiB', name: 'mebibyte' },
  { size: p2(1), abbrev: 'KiB', name: 'kibibyte' },
  { size: 1, abbrev: 'B', name: 'byte' },
]
// (1000^n) `div` 8: exact, as 1000 is a multiple of 8.
const BANDWIDTH_UNITS: readonly Unit[] = [
  { size: p10(8) / 8, abbrev: 'Ybit', name: 'yottabit' },
  { size: p10(7) / 8, abbrev: 'Zbit', name: 'zettabit' },
  { size: p10(6) / 8, abbrev: 'Ebit', name: 'exabit' },
  { size: p10(5) / 8, abbrev: 'Pbit', name: 'petabit' },
  { size: p10(4) / 8, abbrev: 'Tbit', name: 'terabit' },
  { size: p10(3) / 8, abbrev: 'Gbit', name: 'gigabit' },
  { size: p10(2) / 8, abbrev: 'Mbit', name: 'megabit' },
  { size: p10(1) / 8, abbrev: 'kbit', name: 'kilobit' },
]
/** dataUnits: what readSize is given everywhere git-annex reads a size. */
const DATA_UNITS: readonly Unit[] = [...STORAGE_UNITS, ...COMMITTEE_UNITS, ...BANDWIDTH_UNITS]

// ---------------------------------------------------------------------------------------
// Haskell `reads` of a number (GHC's Read Integer / Read Double through its lexer)

/** Data.Char.isSpace: ASCII white space, NO-BREAK SPACE and the Unicode space separators. */
const SPACE = /^[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]*/u

const skipSpace = (s: string): string => s.replace(SPACE, '')

// One number lexeme, as GHC's lexer takes it (maximal munch): hex, octal, or decimal with
// an optional fraction (digits on both sides of the dot) and exponent.
const LEXEME = /^(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|(\d+)(\.\d+)?([eE][-+]?\d+)?)/

interface Parsed {
  readonly value: number
  readonly rest: string
}

function lexNumber(s: string, kind: 'integer' | 'double'): Parsed | undefined {
  if (kind === 'double') {
    // Read Double also takes these two identifiers.
    for (const [word, value] of [['NaN', Number.NaN], ['Infinity', Number.POSITIVE_INFINITY]] as const)
      if (s.startsWith(word) && !/^[\p{L}\p{N}_']/u.test(s.slice(word.length))) return { value, rest: s.slice(word.length) }
  }
  const m = LEXEME.exec(s)
  if (!m) return undefined
  const rest = s.slice(m[0].length)
  if (m[1] !== undefined) return { value: Number.parseInt(m[1], 16), rest }
  if (m[2] !== undefined) return { value: Number.parseInt(m[2], 8), rest }
  // Read Integer refuses a lexeme with a fraction or an exponent (it does not stop before them).
  if (kind === 'integer' && (m[4] !== undefined || m[5] !== undefined)) return undefined
  return { value: Number(m[0]), rest }
}

/**
 * The first result of Haskell's `reads` for a number: leading white space, any number of
 * enclosing parentheses (white space allowed inside), a minus sign (white space allowed
 * after it), one number lexeme. The rest of the input is returned, not judged.
 */
export function readsNumber(input: string, kind: 'integer' | 'double'): Parsed | undefined {
  const s = skipSpace(input)
  if (s.startsWith('(')) {
    const inner = readsNumber(s.slice(1), kind)
    if (!inner) return undefined
    const after = skipSpace(inner.rest)
    return after.startsWith(')') ? { value: inner.value, rest: after.slice(1) } : undefined
  }
  if (s.startsWith('-')) {
    const n = lexNumber(skipSpace(s.slice(1)), kind)
    return n ? { value: -n.value, rest: n.rest } : undefined
  }
  return lexNumber(s, kind)
}

/**
 * Utility/PartialPrelude.hs readish for an Integer: what git-annex reads from a log that
 * holds a number (maxsize.log): " 12abc" is 12, "0x10" is 16, "12.5" and "1e3" nothing.
 */
export function readishInteger(input: string): number | undefined {
  return readsNumber(input, 'integer')?.value
}

/** Haskell's `round`: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x
  const f = Math.floor(x)
  const d = x - f
  if (d < 0.5) return f
  if (d > 0.5) return f + 1
  return f % 2 === 0 ? f : f + 1
}

/**
 * readSize dataUnits: "100 megabytes", "1GB", "0.5 GiB", "(5)mb", "512": a number as
 * `reads :: Double` takes it, then white space and a unit matched case-insensitively by
 * abbreviation, name, plural name, or abbreviation without its final "B" ("1k"); the
 * unit's letters end at the first non-letter and anything after is ignored; no unit means
 * bytes. Rounded half to even. Undefined for what git-annex calls a bad size (where it
 * uses its default instead). NaN and Infinity come out as -Infinity and Infinity (git-annex
 * rounds them to huge integers).
 */
export function readSize(input: string): number | undefined {
  const n = readsNumber(input, 'double')
  if (!n) return undefined
  const unit = /^\p{L}*/u.exec(skipSpace(n.rest))![0].toLowerCase()
  let mult: number | undefined
  if (unit === '') mult = 1
  else {
    const u = DATA_UNITS.find((x) => {
      const a = x.abbrev.toLowerCase()
      return a === unit || x.name === unit || `${x.name}s` === unit || a === `${unit}b`
    })
    mult = u?.size
  }
  if (mult === undefined) return undefined
  if (Number.isNaN(n.value)) return Number.NEGATIVE_INFINITY
  return roundHalfEven(n.value * mult)
}

// Utility/HumanNumber.hs showImprecise: at most `precision` decimals, trailing zeros dropped.
function showImprecise(precision: number, v: number): string {
  let int = Math.trunc(v)
  let rem = Math.round((v - int) * 10 ** precision)
  if (rem === 10 ** precision) {
    int += 1
    rem = 0
  }
  if (rem === 0) return String(int)
  return `${int}.${String(rem).padStart(precision, '0').replace(/0+$/, '')}`
}

/**
 * git-annex's `roughSize storageUnits short`: "1.23 MB" (short) or "1.23 megabytes",
 * "1 kilobyte", "7 bytes" (long, as `git annex info` shows sizes).
 */
export function roughSize(bytes: number, opts: { short?: boolean } = {}): string {
  if (bytes < 0) return `-${roughSize(-bytes, opts)}`
  const short = opts.short ?? true
  const u = STORAGE_UNITS.find((x) => bytes >= x.size) ?? STORAGE_UNITS[STORAGE_UNITS.length - 1]!
  const s = showImprecise(2, bytes / u.size)
  return `${s} ${short ? u.abbrev : s === '1' ? u.name : `${u.name}s`}`
}
