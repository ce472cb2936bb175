// git-annex's standard groups and their built-in preferred content expressions
// (Types/StandardGroups.hs, git-annex 10.20250416; doc/preferred_content/standard_groups.mdwn).
// The strings are the ones the code uses, which differ from the documentation in where
// `or approxlackingcopies=1` is added: transfer and smallarchive embed an expression that
// already carries it, so it appears twice in them.

export const STANDARD_GROUPS = [
  'client',
  'transfer',
  'backup',
  'incrementalbackup',
  'smallarchive',
  'archive',
  'source',
  'manual',
  'public',
  'unwanted',
] as const

export type StandardGroup = (typeof STANDARD_GROUPS)[number]

const STANDARD_SET: ReadonlySet<string> = new Set(STANDARD_GROUPS)

export function isStandardGroup(group: string): group is StandardGroup {
  return STANDARD_SET.has(group)
}

/** Most groups also want content that only untrusted or dead repositories hold. */
const lastResort = (e: string): string => `(${e}) or approxlackingcopies=1`
const notArchived = 'not (copies=archive:1 or copies=smallarchive:1)'
const client = lastResort(`include=* and ((exclude=*/archive/* and exclude=archive/*) or (${notArchived}))`)
const archive = lastResort(notArchived)

const EXPRESSIONS: Readonly<Record<StandardGroup, string>> = {
  client,
  transfer: lastResort(`not (inallgroup=client and copies=client:2) and (${client})`),
  backup: 'anything',
  incrementalbackup: lastResort('(not copies=backup:1) and (not copies=incrementalbackup:1)'),
  smallarchive: lastResort(`(include=*/archive/* or include=archive/*) and (${archive})`),
  archive,
  source: 'not (copies=1)',
  manual: `present and (${client})`,
  public: 'inpreferreddir',
  unwanted: 'not anything',
}

export function standardExpression(group: StandardGroup): string {
  return EXPRESSIONS[group]
}

/**
 * The standard group a repository in `groups` uses for `standard`: only when it is in exactly
 * one standard group (Logs/Group.hs getStandardGroup); other groups it is in do not matter.
 */
export function standardGroupOf(groups: Iterable<string>): StandardGroup | undefined {
  let found: StandardGroup | undefined
  for (const g of groups) {
    if (!isStandardGroup(g)) continue
    if (found !== undefined && found !== g) return undefined
    found = g
  }
  return found
}
