// Preferred content expressions (git-annex-preferred-content(1)), parsed and evaluated the way
// git-annex 10.20250416 does: Annex/FileMatcher.hs (tokens), Utility/Matcher.hs (grammar),
// Limit.hs (terms), Logs/PreferredContent.hs (standard, groupwanted, fallbacks). Pure: every
// fact about repositories comes from the caller's context. Spec §3.4 uses this to choose the
// cluster nodes a PUT goes to, §7.4–7.5 list the inputs.
//
// Grammar, as git-annex has it (not the precedence a reader may expect):
// * tokens are whitespace-separated words; '(' and ')' are always tokens of their own;
// * `and`, `or` and `not` bind strictly left to right with equal precedence:
//   `a or b and c` is `(a or b) and c`; two terms side by side are joined by `and`;
// * `not` applies to the next term or parenthesised group only;
// * a missing `)` closes at the end, a stray `)` is ignored, an operator with nothing after
//   it leaves an always-true operand (`a or` matches everything);
// * inside parentheses no `and` is inserted, so a nested group continues from what precedes
//   it: `( x ( b or c ) )` is `(x and b) or c` (observed with git-annex).
//
// Where we differ from git-annex, on purpose:
// * `metadata=` is refused (PreferredContentParseError): we have no metadata log;
// * a glob git-annex cannot compile (`include=[abc`) is refused when parsed; git-annex accepts
//   it and fails (or, in `find`, hangs) when it evaluates it;
// * `securehash` is false for external (X…) and VURL backends, whose security git-annex asks
//   the backend about.
// test/placement/git-annex.test.ts checks the rest against the real git-annex.
import { readSize } from '../annex/data-units.js'
import { isClusterUuid, isTrustLevel, TRUST_ORDER, type TrustLevel } from '../annex/uuid.js'
import { BadGroupWantedError, PreferredContentParseError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { balancedPick, fullyBalancedCandidates, fullySizeBalancedCandidates, type SizeView } from './balanced.js'
import { standardExpression, standardGroupOf } from './standard-groups.js'

export type CopiesFilter =
  | { readonly kind: 'all' }
  | { readonly kind: 'trust'; readonly level: TrustLevel; readonly orHigher: boolean }
  | { readonly kind: 'group'; readonly group: string }

export type BalancedKind = 'balanced' | 'fullybalanced' | 'sizebalanced' | 'fullysizebalanced'

export type Term =
  | { readonly op: 'anything' | 'nothing' | 'present' | 'securehash' | 'unused' | 'inpreferreddir' }
  | { readonly op: 'standard' | 'groupwanted' }
  | { readonly op: 'include' | 'exclude'; readonly glob: string; readonly regex: RegExp }
  | { readonly op: 'largerthan' | 'smallerthan'; readonly text: string; readonly bytes: number }
  | { readonly op: 'copies'; readonly text: string; readonly filter: CopiesFilter; readonly n: number }
  | { readonly op: 'lackingcopies' | 'approxlackingcopies'; readonly n: number }
  | { readonly op: 'inallgroup' | 'onlyingroup'; readonly group: string }
  | { readonly op: 'inbackend'; readonly backend: string }
  | { readonly op: BalancedKind; readonly text: string; readonly group: string; readonly n: number; readonly copies: Term | undefined }

/** Utility/Matcher.hs Matcher: `any` is the empty expression (and what a dangling operator leaves). */
export type Expr =
  | { readonly kind: 'any' }
  | { readonly kind: 'and' | 'or'; readonly left: Expr; readonly right: Expr }
  | { readonly kind: 'not'; readonly expr: Expr }
  | { readonly kind: 'term'; readonly term: Term }

// ---------------------------------------------------------------------------------------------
// Tokens

// Haskell's isSpace (words): ASCII whitespace, NBSP and the Unicode space separators.
const SPACE = /[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+/u

function tokenize(expr: string): string[] {
  const out: string[] = []
  for (const w of expr.split(SPACE)) {
    for (const piece of w.split(/([()])/)) if (piece !== '') out.push(piece)
  }
  return out
}

type Token = { t: 'and' | 'or' | 'not' | 'open' | 'close' } | { t: 'term'; term: Term }

const SIMPLE = new Set(['anything', 'nothing', 'present', 'securehash', 'unused', 'inpreferreddir', 'standard', 'groupwanted'])
const UNSUPPORTED = new Set(['metadata'])

function parseToken(word: string): Token {
  switch (word) {
    case 'and':
    case 'or':
    case 'not':
      return { t: word }
    case '(':
      return { t: 'open' }
    case ')':
      return { t: 'close' }
  }
  if (SIMPLE.has(word)) return { t: 'term', term: { op: word } as Term }
  const eq = word.indexOf('=')
  const k = eq < 0 ? word : word.slice(0, eq)
  const v = eq < 0 ? '' : word.slice(eq + 1)
  const term = valueTerm(k, v)
  if (term === undefined) {
    if (UNSUPPORTED.has(k)) throw new PreferredContentParseError(`preferred content term "${k}=" is not supported by annex-proxy`)
    throw new PreferredContentParseError(`Parse failure: near ${JSON.stringify(word)}`)
  }
  return { t: 'term', term }
}

function valueTerm(k: string, v: string): Term | undefined {
  switch (k) {
    case 'include':
    case 'exclude':
      return { op: k, glob: v, regex: globRegex(v) }
    case 'largerthan':
    case 'smallerthan': {
      const bytes = readSize(v)
      if (bytes === undefined) throw new PreferredContentParseError(`Parse failure: bad size ${JSON.stringify(v)} for ${k}`)
      return { op: k, text: v, bytes }
    }
    case 'copies':
      return parseCopies(v)
    case 'lackingcopies':
    case 'approxlackingcopies': {
      const n = readInt(v)
      if (n === undefined) throw new PreferredContentParseError(`Parse failure: bad value for number of lacking copies: ${JSON.stringify(v)}`)
      return { op: k, n }
    }
    case 'inallgroup':
    case 'onlyingroup':
      return { op: k, group: v }
    case 'inbackend':
      return { op: k, backend: v }
    case 'balanced':
    case 'fullybalanced':
    case 'sizebalanced':
    case 'fullysizebalanced':
      return parseBalanced(k, v)
  }
  return undefined
}

/** Limit.hs limitCopies: `N`, `group:N` or `trustlevel[+]:N`; a group named like a trust level is the trust level. */
function parseCopies(v: string): Term {
  const parts = v.split(':')
  const num = parts.length === 1 ? parts[0]! : parts.length === 2 ? parts[1]! : undefined
  if (num === undefined) throw new PreferredContentParseError(`Parse failure: bad value for copies: ${JSON.stringify(v)}`)
  const n = readInt(num)
  if (n === undefined) throw new PreferredContentParseError(`Parse failure: bad number for copies: ${JSON.stringify(v)}`)
  if (parts.length === 1) return { op: 'copies', text: v, filter: { kind: 'all' }, n }
  const spec = parts[0]!
  const plus = spec.endsWith('+')
  const level = plus ? spec.slice(0, -1) : spec
  const filter: CopiesFilter = isTrustLevel(level) ? { kind: 'trust', level, orHigher: plus } : { kind: 'group', group: spec }
  return { op: 'copies', text: v, filter, n }
}


function parseBalanced(k: BalancedKind, v: string): Term {
  const parts = v.split(':')
  if (parts.length > 2) throw new PreferredContentParseError(`Parse failure: bad value for ${k}: ${JSON.stringify(v)}`)
  const n = parts.length === 2 ? readInt(parts[1]!) : 1
  if (n === undefined) throw new PreferredContentParseError(`Parse failure: bad number for ${k}: ${JSON.stringify(v)}`)
  const group = parts[0]!
  // balanced= and sizebalanced= also hold `copies=g:n` (or g:1), parsed as copies= parses it.
  const copies = k === 'balanced' || k === 'sizebalanced' ? parseCopies(parts.length === 2 ? v : `${v}:1`) : undefined
  return { op: k, text: v, group, n, copies }
}

/**
 * Haskell `readish :: Int`: the number at the start of the word, the rest ignored (git-annex
 * reads `copies=1abc` as 1). Decimal, 0x or 0o, optionally negative; a number token with a
 * fraction or exponent (`1.0`, `1e0`) is not an Int and fails.
 */
function readInt(s: string): number | undefined {
  const m = /^(-?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|(\d+))/.exec(s)
  if (!m) return undefined
  let n: number
  if (m[2] !== undefined) n = Number.parseInt(m[2], 16)
  else if (m[3] !== undefined) n = Number.parseInt(m[3], 8)
  else {
    if (/^(?:\.\d|[eE][+-]?\d)/.test(s.slice(m[0].length))) return undefined
    n = Number(m[4])
  }
  return m[1] ? -n : n
}


// ---------------------------------------------------------------------------------------------
// Globs: Utility/Glob.hs compiles a glob to a POSIX regex for regex-tdfa (case-sensitive, file
// path mode). We build that same regex text, then read it as regex-tdfa would into a JS RegExp.
// So `*` and `?` cross '/' ("*" matches "a/b/c"), a '/' matches a run of slashes, `[…]` and
// `[!…]` are POSIX bracket expressions (with [:classes:]), and regex-tdfa's default multiline
// mode anchors at line starts/ends and keeps '.' off newlines.

function wildToRegex(glob: string): string {
  let out = ''
  let i = 0
  const esc = (c: string): string => `\\${c}`
  const go = (): void => {
    while (i < glob.length) {
      const c = String.fromCodePoint(glob.codePointAt(i)!)
      i += c.length
      if (c === '*') out += '.*'
      else if (c === '?') out += '.'
      else if (c === '[') {
        if (glob[i] === '!') {
          i++
          out += '[^'
        } else out += '['
        // inpat: copy until the first ']', which ends it (the ']' itself is emitted as-is)
        while (i < glob.length) {
          const d = String.fromCodePoint(glob.codePointAt(i)!)
          i += d.length
          if (d === ']') {
            out += ']'
            break
          }
          out += d === '\\' ? esc(d) : d
        }
      } else if (c === '/') out += '[/]+'
      else if (c === '\\') out += '[\\]+'
      else if (/^[\p{L}\p{N}]$/u.test(c) && isHaskellAlnum(c)) out += c
      else out += esc(c)
    }
  }
  go()
  return `^${out}$`
}

// Haskell isDigit is ASCII 0-9 only; isAlpha is any letter (general category L*).
const isHaskellAlnum = (c: string): boolean => /^[0-9\p{L}]$/u.test(c)

const POSIX_CLASSES: Readonly<Record<string, string>> = {
  // regex-tdfa decodes character classes to ASCII ranges.
  alnum: '0-9a-zA-Z',
  digit: '0-9',
  punct: '!-\\/:-@\\[-`{-~',
  alpha: 'a-zA-Z',
  graph: '!-~',
  space: ' \\t\\r\\n\\v\\f',
  blank: ' \\t',
  lower: 'a-z',
  upper: 'A-Z',
  cntrl: '\\x00-\\x1f\\x7f',
  print: ' -~',
  xdigit: '0-9a-fA-F',
  word: '0-9a-zA-Z_',
}

const classChar = (c: string): string => (/[\\\]\[^\-]/.test(c) ? `\\${c}` : c)
// Outside a class, with the u flag, only syntax characters may be escaped ('-' may not).
const litChar = (c: string): string => (/[\^$\\.*+?()[\]{}|\/]/.test(c) ? `\\${c}` : c)

/** Reads the POSIX ERE that wildToRegex produces, as regex-tdfa does, into JS source. */
function posixToJs(re: string, glob: string): string {
  const bad = (why: string): never => {
    throw new PreferredContentParseError(`Parse failure: glob ${JSON.stringify(glob)}: ${why}`)
  }
  const cps = [...re]
  let i = 0
  let out = ''
  while (i < cps.length) {
    const c = cps[i++]!
    if (c === '^' && i === 1) out += '(?:^|(?<=\\n))'
    else if (c === '$' && i === cps.length) out += '(?:$|(?=\\n))'
    else if (c === '.') out += '[^\\n]'
    else if (c === '*' || c === '+') out += c
    else if (c === '\\') {
      if (i >= cps.length) bad('trailing backslash')
      out += litChar(cps[i++]!)
    } else if (c === '[') {
      let negate = false
      if (cps[i] === '^') {
        negate = true
        i++
      }
      let body = ''
      let first = true
      for (;;) {
        if (i >= cps.length) bad('unterminated [')
        const d = cps[i]!
        if (d === ']' && !first) {
          i++
          break
        }
        first = false
        if (d === '[' && (cps[i + 1] === ':' || cps[i + 1] === '.' || cps[i + 1] === '=')) {
          const kind = cps[i + 1]!
          let j = i + 2
          let name = ''
          while (j < cps.length && !(cps[j] === kind && cps[j + 1] === ']')) name += cps[j++]
          if (j >= cps.length) bad(`unterminated [${kind}`)
          i = j + 2
          if (kind === ':') {
            const cls = POSIX_CLASSES[name]
            if (cls === undefined) bad(`unknown character class [:${name}:]`)
            body += cls
          } else body += [...name].map(classChar).join('')
          continue
        }
        i++
        if (cps[i] === '-' && cps[i + 1] !== undefined && cps[i + 1] !== ']') {
          const hi = cps[i + 1]!
          if (hi.codePointAt(0)! < d.codePointAt(0)!) bad(`bad range ${d}-${hi}`)
          body += `${classChar(d)}-${classChar(hi)}`
          i += 2
        } else body += classChar(d)
      }
      // In multiline mode a negated set never matches a newline.
      out += negate ? `[^\\n${body}]` : `[${body}]`
    } else out += litChar(c)
  }
  return out
}

export function globRegex(glob: string): RegExp {
  return new RegExp(posixToJs(wildToRegex(glob), glob), 'u')
}

/** Whether `file` (relative to the top of the repository) matches a git-annex glob. */
export function matchGlob(glob: string, file: string): boolean {
  return globRegex(glob).test(file)
}

// ---------------------------------------------------------------------------------------------
// Grammar: Utility/Matcher.hs generate, rebuilt: groups first, implicit `and`, then a strict
// left-to-right fold.

type Group = { g: 'one'; tok: Token } | { g: 'group'; items: Group[] }

function tokenGroups(toks: Token[]): Group[] {
  let i = 0
  const inner = (): Group[] => {
    const items: Group[] = []
    while (i < toks.length) {
      const t = toks[i++]!
      if (t.t === 'close') return items
      if (t.t === 'open') items.push({ g: 'group', items: inner() })
      else items.push({ g: 'one', tok: t })
    }
    return items
  }
  const top: Group[] = []
  while (i < toks.length) {
    const t = toks[i++]!
    if (t.t === 'close') continue // a stray ')' is ignored
    if (t.t === 'open') top.push({ g: 'group', items: inner() })
    else top.push({ g: 'one', tok: t })
  }
  return top
}

const needsAnd = (g: Group): boolean => g.g === 'group' || g.tok.t === 'term'

function implicitAnd(gs: Group[]): Group[] {
  const out: Group[] = []
  for (let i = 0; i < gs.length; i++) {
    out.push(gs[i]!)
    if (i + 1 < gs.length && needsAnd(gs[i]!) && needsAnd(gs[i + 1]!)) out.push({ g: 'one', tok: { t: 'and' } })
  }
  return out
}

const ANY: Expr = { kind: 'any' }

function fold(start: Expr, gs: Group[]): Expr {
  let m = start
  let i = 0
  // consume: one step from position i with accumulator acc; returns the new accumulator.
  const consume = (acc: Expr): Expr => {
    while (i < gs.length) {
      const g = gs[i++]!
      // git-annex applies implicit `and` to the top level only: inside a group a nested
      // group continues from the accumulator, so `(x (b or c))` is `(x and b) or c`.
      if (g.g === 'group') return fold(acc, g.items)
      const t = g.tok
      if (t.t === 'term') return { kind: 'and', left: acc, right: { kind: 'term', term: t.term } }
      if (t.t === 'and') return { kind: 'and', left: acc, right: consume(ANY) }
      if (t.t === 'or') return { kind: 'or', left: acc, right: consume(ANY) }
      if (t.t === 'not') return { kind: 'and', left: acc, right: { kind: 'not', expr: consume(ANY) } }
      // open/close cannot remain after grouping
    }
    return acc
  }
  while (i < gs.length) m = consume(m)
  return m
}

function simplify(e: Expr): Expr {
  switch (e.kind) {
    case 'and':
      if (e.left.kind === 'any') return simplify(e.right)
      if (e.right.kind === 'any') return simplify(e.left)
      return { kind: 'and', left: simplify(e.left), right: simplify(e.right) }
    case 'or':
      return { kind: 'or', left: simplify(e.left), right: simplify(e.right) }
    case 'not':
      return { kind: 'not', expr: simplify(e.expr) }
    default:
      return e
  }
}

/**
 * Parses a preferred content expression. Throws PreferredContentParseError for anything
 * git-annex would refuse (unknown words, bad sizes or numbers) and for `metadata=`, which
 * annex-proxy does not evaluate. The empty expression parses to `{ kind: 'any' }`.
 */
export function parse(expression: string): Expr {
  const toks = tokenize(expression).map(parseToken)
  return simplify(fold(ANY, implicitAnd(tokenGroups(toks))))
}

/** Source text that parses back to the same tree (fully parenthesised). */
export function format(e: Expr): string {
  switch (e.kind) {
    case 'any':
      return '()'
    case 'and':
    case 'or':
      return `( ${format(e.left)} ${e.kind} ${format(e.right)} )`
    case 'not':
      return `not ${e.expr.kind === 'term' ? format(e.expr) : `( ${format(e.expr)} )`}`
    case 'term':
      return formatTerm(e.term)
  }
}

function formatTerm(t: Term): string {
  switch (t.op) {
    case 'include':
    case 'exclude':
      return `${t.op}=${t.glob}`
    case 'largerthan':
    case 'smallerthan':
    case 'copies':
    case 'balanced':
    case 'fullybalanced':
    case 'sizebalanced':
    case 'fullysizebalanced':
      return `${t.op}=${t.text}`
    case 'lackingcopies':
    case 'approxlackingcopies':
      return `${t.op}=${t.n}`
    case 'inallgroup':
    case 'onlyingroup':
      return `${t.op}=${t.group}`
    case 'inbackend':
      return `${t.op}=${t.backend}`
    default:
      return t.op
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

export interface EvalContext {
  /** The repository whose preference is asked (present, balanced, standard, groupwanted). */
  readonly uuid: string
  readonly key: Key
  /**
   * The associated file relative to the top of the repository, if known. Without one,
   * include= never matches and exclude= always does (Limit.hs; the man page says neither matches).
   */
  readonly file?: string | undefined
  /**
   * The key's location log as git-annex reads it: UUIDs logged present, dead ones included
   * (they are excluded here by `trust`), plus any cluster UUIDs (§3.6; never counted as copies).
   */
  readonly locations: ReadonlySet<string>
  /** Whether `uuid` holds the key; defaults to its (non-dead) presence in `locations`. */
  readonly present?: boolean | undefined
  /** group.log: uuid → groups. */
  readonly groups: ReadonlyMap<string, ReadonlySet<string>>
  /** group-preferred-content.log: group → expression (for `groupwanted`). */
  readonly groupWanted?: ReadonlyMap<string, string> | undefined
  /** trust.log; absent means semitrusted. */
  readonly trust?: ReadonlyMap<string, TrustLevel> | undefined
  /**
   * annex.numcopies (default 1), for lackingcopies / approxlackingcopies. git-annex takes
   * lackingcopies' value from .gitattributes for the file when it has one; pass that here.
   */
  readonly numCopies?: number | undefined
  readonly maxSizes?: ReadonlyMap<string, number> | undefined
  /** Live repository sizes in bytes (missing = 0), in-flight additions included. */
  readonly repoSizes?: ReadonlyMap<string, number> | undefined
  /**
   * Called when the answer depends on repository sizes (a balanced-family term was
   * evaluated): git-annex then counts the key as in flight to the repository if it wants it.
   */
  readonly onSizesUsed?: (() => void) | undefined
  /** UUIDs to treat as not holding the key (git-annex evaluates drops as if already dropped). */
  readonly assumeNotPresent?: ReadonlySet<string> | undefined
  /** The repository's preferreddir= (for inpreferreddir), default "public". */
  readonly preferredDir?: string | undefined
  /** git-annex --rebalance. */
  readonly rebalance?: boolean | undefined
  /** annex.fullybalancedthreshhold as a fraction, default 0.9. */
  readonly fullyBalancedThreshold?: number | undefined
  /** Whether the key is unused (only consulted when there is no file). */
  readonly unused?: boolean | undefined
}

// After expanding `standard` and `groupwanted` into calls.
type Resolved =
  | { readonly kind: 'any' }
  | { readonly kind: 'and' | 'or'; readonly left: Resolved; readonly right: Resolved }
  | { readonly kind: 'not'; readonly expr: Resolved }
  | { readonly kind: 'term'; readonly term: Term }
  | { readonly kind: 'call'; readonly body: Resolved; readonly unstable: boolean }

const PRESENT: Resolved = { kind: 'term', term: { op: 'present' } }
/** Logs/PreferredContent.hs unknownMatcher: what an unusable expression falls back to. */
const UNKNOWN: Resolved = { kind: 'call', body: PRESENT, unstable: true }

function resolve(e: Expr, ctx: EvalContext, expandStandard: boolean, expandGroupWanted: boolean): Resolved {
  switch (e.kind) {
    case 'any':
      return e
    case 'and':
    case 'or':
      return { kind: e.kind, left: resolve(e.left, ctx, expandStandard, expandGroupWanted), right: resolve(e.right, ctx, expandStandard, expandGroupWanted) }
    case 'not':
      return { kind: 'not', expr: resolve(e.expr, ctx, expandStandard, expandGroupWanted) }
    case 'term': {
      const op = e.term.op
      if (op !== 'standard' && op !== 'groupwanted') return e
      const mine = ctx.groups.get(ctx.uuid) ?? new Set<string>()
      let text: string | undefined
      if (op === 'standard' && expandStandard) {
        const g = standardGroupOf(mine)
        if (g !== undefined) text = standardExpression(g)
      } else if (op === 'groupwanted' && expandGroupWanted && ctx.groupWanted) {
        const found = [...ctx.groupWanted].filter(([g]) => mine.has(g))
        if (found.length === 1) text = found[0]![1]
      }
      if (text === undefined) return UNKNOWN
      let parsed: Expr
      try {
        parsed = parse(text)
      } catch (err) {
        // A groupwanted expression that does not parse spoils the expression using it.
        if (err instanceof PreferredContentParseError) throw new BadGroupWantedError(`groupwanted expression does not parse: ${text}`)
        throw err
      }
      const body = op === 'standard' ? resolve(parsed, ctx, false, false) : resolve(parsed, ctx, true, false)
      return { kind: 'call', body, unstable: hasUnstable(body) }
    }
  }
}

// Terms that make no sense negated (Limit.hs matchNegationUnstable): `not present` would get
// content and then drop it. git-annex refuses to match anything with such a negation.
const isUnstableTerm = (t: Term): boolean => t.op === 'present' || t.op === 'balanced' || t.op === 'sizebalanced'

function hasUnstable(r: Resolved): boolean {
  switch (r.kind) {
    case 'any':
      return false
    case 'and':
    case 'or':
      return hasUnstable(r.left) || hasUnstable(r.right)
    case 'not':
      return hasUnstable(r.expr)
    case 'term':
      return isUnstableTerm(r.term)
    case 'call':
      return r.unstable
  }
}

/** Utility/Matcher.hs findNegated: terms (calls count as one) under an odd number of `not`s. */
function negatedUnstable(r: Resolved, negated: boolean): boolean {
  switch (r.kind) {
    case 'any':
      return false
    case 'and':
    case 'or':
      return negatedUnstable(r.left, negated) || negatedUnstable(r.right, negated)
    case 'not':
      return negatedUnstable(r.expr, !negated)
    case 'term':
      return negated && isUnstableTerm(r.term)
    case 'call':
      return negated && r.unstable
  }
}

/**
 * Evaluates a parsed expression for `ctx.uuid` and `ctx.key` as git-annex's checkMatcher does
 * (short-circuit, left to right). An expression with a negated `present` / `balanced` /
 * `sizebalanced` never matches. `standard` and `groupwanted` expand from ctx; when they cannot
 * (not exactly one standard group / groupwanted expression) they act as `present`, and a
 * groupwanted expression that does not parse makes the whole expression act as `present`.
 */
export function evaluate(expr: Expr, ctx: EvalContext): boolean {
  let r: Resolved
  try {
    r = resolve(expr, ctx, true, true)
  } catch (err) {
    if (!(err instanceof BadGroupWantedError)) throw err
    r = UNKNOWN
  }
  if (negatedUnstable(r, false)) return false
  return run(r, new Facts(ctx))
}

export interface PreferredContentSettings {
  /** preferred-content.log expression for the repository, if any. */
  readonly wanted?: string | undefined
  /** required-content.log expression; required content is also preferred (combined with `or`). */
  readonly required?: string | undefined
}

/**
 * Logs/PreferredContent.hs isPreferredContent for one repository: no (or an empty) expression
 * gives `notConfigured`; an expression that does not parse acts as `present`, as git-annex
 * does with expressions written by newer versions.
 */
export function isPreferredContent(settings: PreferredContentSettings, ctx: EvalContext, notConfigured: boolean): boolean {
  const w = settings.wanted === undefined ? undefined : parseOrUnknown(settings.wanted)
  const q = settings.required === undefined ? undefined : parseOrUnknown(settings.required)
  let e: Expr | undefined
  if (w !== undefined && q !== undefined) {
    if (w === 'unknown' || q === 'unknown') e = PRESENT_EXPR
    else e = w.kind === 'any' ? q : q.kind === 'any' ? w : { kind: 'or', left: w, right: q }
  } else {
    const only = w ?? q
    e = only === 'unknown' ? PRESENT_EXPR : only
  }
  if (e === undefined || e.kind === 'any') return notConfigured
  if (e === PRESENT_EXPR) return new Facts(ctx).present()
  return evaluate(e, ctx)
}

const PRESENT_EXPR: Expr = { kind: 'term', term: { op: 'present' } }

function parseOrUnknown(text: string): Expr | 'unknown' {
  try {
    return parse(text)
  } catch (err) {
    if (err instanceof PreferredContentParseError) return 'unknown'
    throw err
  }
}

/** Lazily computed views of the context, shared by the terms of one evaluation. */
class Facts {
  private live?: Set<string>
  constructor(readonly ctx: EvalContext) {}

  trustOf(u: string): TrustLevel {
    return this.ctx.trust?.get(u) ?? 'semitrusted'
  }
  /** Remote.keyLocations: logged locations minus dead repositories. */
  keyLocations(): Set<string> {
    if (!this.live) this.live = new Set([...this.ctx.locations].filter((u) => this.trustOf(u) !== 'dead'))
    return this.live
  }
  present(): boolean {
    return this.ctx.present ?? this.keyLocations().has(this.ctx.uuid)
  }
  notPresent(u: string): boolean {
    return this.ctx.assumeNotPresent?.has(u) ?? false
  }
  members(group: string): Set<string> {
    const out = new Set<string>()
    for (const [u, gs] of this.ctx.groups) if (gs.has(group)) out.add(u)
    return out
  }
  sizes(): SizeView {
    this.ctx.onSizesUsed?.()
    return { maxSizes: this.ctx.maxSizes ?? new Map(), repoSizes: this.ctx.repoSizes ?? new Map() }
  }
}


function run(r: Resolved, f: Facts): boolean {
  switch (r.kind) {
    case 'any':
      return true
    case 'and':
      return run(r.left, f) && run(r.right, f)
    case 'or':
      return run(r.left, f) || run(r.right, f)
    case 'not':
      return !run(r.expr, f)
    case 'call':
      return run(r.body, f)
    case 'term':
      return term(r.term, f)
  }
}

function countCopies(t: Extract<Term, { op: 'copies' }>, f: Facts): boolean {
  let n = 0
  for (const u of f.keyLocations()) {
    if (f.notPresent(u) || isClusterUuid(u)) continue
    const flt = t.filter
    if (flt.kind === 'group' && !(f.ctx.groups.get(u)?.has(flt.group) ?? false)) continue
    if (flt.kind === 'trust') {
      const have = TRUST_ORDER[f.trustOf(u)]
      const want = TRUST_ORDER[flt.level]
      if (flt.orHigher ? have < want : have !== want) continue
    }
    n++
  }
  return n >= t.n
}

const SECURE_BACKEND = /^(SHA(224|256|384|512)|SHA3_(224|256|384|512)|SKEIN(256|512)|BLAKE2(B|BP|S|SP)\d+)E?$/

function term(t: Term, f: Facts): boolean {
  const ctx = f.ctx
  switch (t.op) {
    case 'anything':
      return true
    case 'nothing':
      return false
    case 'present':
      return f.present()
    case 'include':
      return ctx.file !== undefined && t.regex.test(ctx.file)
    case 'exclude':
      return !(ctx.file !== undefined && t.regex.test(ctx.file))
    case 'largerthan':
      // Haskell compares Maybe sizes: an unknown size is smaller than every known one.
      return ctx.key.size !== undefined && ctx.key.size > t.bytes
    case 'smallerthan':
      return ctx.key.size === undefined || ctx.key.size < t.bytes
    case 'copies':
      return countCopies(t, f)
    case 'lackingcopies':
    case 'approxlackingcopies': {
      let have = 0
      for (const u of f.keyLocations()) {
        if (f.notPresent(u) || isClusterUuid(u) || f.trustOf(u) === 'untrusted') continue
        have++
      }
      return (ctx.numCopies ?? 1) - have >= t.n
    }
    case 'inallgroup': {
      const want = f.members(t.group)
      if (want.size === 0) return true
      const locs = f.keyLocations()
      for (const u of want) if (f.notPresent(u) || !locs.has(u)) return false
      return true
    }
    case 'onlyingroup': {
      const want = f.members(t.group)
      if (want.size === 0) return false
      let any = false
      for (const u of f.keyLocations()) {
        if (f.notPresent(u)) continue
        if (!want.has(u)) return false
        any = true
      }
      return any
    }
    case 'inbackend':
      return ctx.key.backend === t.backend
    case 'securehash':
      return SECURE_BACKEND.test(ctx.key.backend)
    case 'unused':
      return ctx.file === undefined && (ctx.unused ?? false)
    case 'inpreferreddir':
      return ctx.file !== undefined && lastDirComponent(ctx.file) === (ctx.preferredDir ?? 'public')
    case 'standard':
    case 'groupwanted':
      return f.present() // only reached when not resolved, which resolve() prevents
    case 'fullybalanced':
    case 'fullysizebalanced':
      return fullyBalanced(t.op, t.group, t.n, f)
    case 'balanced':
    case 'sizebalanced': {
      const fully = t.op === 'balanced' ? 'fullybalanced' : 'fullysizebalanced'
      if (ctx.rebalance) return fullyBalanced(fully, t.group, t.n, f)
      return f.present() || (!term(t.copies!, f) && fullyBalanced(fully, t.group, t.n, f))
    }
  }
}

function fullyBalanced(kind: 'fullybalanced' | 'fullysizebalanced', group: string, n: number, f: Facts): boolean {
  const members = f.members(group)
  if (members.size === 0) return false
  const ctx = f.ctx
  const candidates =
    kind === 'fullybalanced'
      ? fullyBalancedCandidates(members, ctx.key, n, ctx.locations, f.sizes(), { rebalance: ctx.rebalance ?? false, threshold: ctx.fullyBalancedThreshold ?? 0.9 })
      : fullySizeBalancedCandidates(members, ctx.key, n, ctx.locations, f.sizes())
  return balancedPick(members, candidates, ctx.key, n).includes(ctx.uuid)
}

/**
 * Limit.hs limitInDir: the directory name must be an element of System.FilePath's splitPath of
 * the file's directory. splitPath keeps each separator on the component before it, so only
 * the last component (the file's own directory) can ever equal a bare name.
 */
function lastDirComponent(file: string): string | undefined {
  const slash = file.lastIndexOf('/')
  if (slash < 0) return '.'
  let dir = file.slice(0, slash)
  // takeDirectory drops trailing separators (but keeps a lone "/").
  dir = dir.replace(/\/+$/, '')
  if (dir === '') return '/'
  const last = dir.slice(dir.lastIndexOf('/') + 1)
  return last
}
