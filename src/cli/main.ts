// annex-proxy command line: `serve` (git annex p2phttp's flags) and `demo` (npm start).
import { ConfigError } from '../errors.js'
import { parseServeArgs, serveOptionsHelp } from '../config/config.js'
import { GitAnnexMissingError, ShellRefusal } from '../errors.js'
import { requireGitAnnex } from '../annex/git-annex-version.js'
import { capYoungGeneration, DEFAULT_YOUNG_GENERATION_MIB } from '../config/young-generation.js'

// Each command loads only its own modules: the server's (fastify, the S3 SDK, …) take seconds to
// load on a busy machine, which a short `upload` or `p2pstdio` should not pay.
const runDemo = async (argv: string[]) => (await import('./demo.js')).runDemo(argv)
const runGitAnnexShell = async (argv: string[]) => (await import('./git-annex-shell.js')).runGitAnnexShell(argv)
const runP2pStdio = async (argv: string[]) => (await import('./p2pstdio.js')).runP2pStdio(argv)
const runRebalance = async (...a: Parameters<typeof import('./rebalance.js').runRebalance>) => (await import('./rebalance.js')).runRebalance(...a)
const runUpload = async (...a: Parameters<typeof import('../upload/cli.js').runUpload>) => (await import('../upload/cli.js')).runUpload(...a)

const USAGE = `usage:
  annex-proxy serve [OPTION]...   serve git-annex repositories over P2P-over-HTTP (git annex p2phttp's flags)
  annex-proxy demo [OPTION]...    serve a demo cluster gateway on 127.0.0.1:9417 (what npm start runs)
  annex-proxy p2pstdio DIR CLIENTUUID [--uuid UUID]
                                  the P2P protocol on stdin/stdout, as git-annex-shell p2pstdio
  annex-proxy git-annex-shell ARG...
                                  git-annex-shell's command line: p2pstdio served here, the rest by git-annex-shell
  annex-proxy upload (--url URL --uuid UUID | --to REMOTE) [-J N] [--backend B] [--json] [--record DIR] PATH...
                                  push files and trees into a served repository (annex-proxy upload --help)
  annex-proxy rebalance [--cluster NAME] [--dry-run] [-J N] [--redis URL]
                                  move content between a cluster's nodes until each holds what its
                                  balanced preferred content wants, in one run (annex-proxy rebalance --help)
  annex-proxy bench [--quick] [OPTION]...
                                  the benchmark against git annex p2phttp (annex-proxy bench --help)

options of serve (and demo):
${serveOptionsHelp()}`

/**
 * Commands that move content hold each chunk until V8 collects its Buffer, as the server
 * does (src/config/young-generation.ts): without flags of their own (git-annex-shell's
 * command line is ssh's), they keep the default cap. serve and demo apply --young-generation.
 */
const CAPPED = new Set(['p2pstdio', 'git-annex-shell', 'upload', 'rebalance'])

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv
  // Before the command's modules load (their loading already grows V8's young generation).
  if (cmd !== undefined && CAPPED.has(cmd)) capYoungGeneration(DEFAULT_YOUNG_GENERATION_MIB)
  switch (cmd) {
    case 'p2pstdio':
      await requireGitAnnex()
      process.exitCode = await runP2pStdio(rest)
      return
    case 'git-annex-shell':
      process.exitCode = await runGitAnnexShell(rest)
      return
    case 'bench': {
      // The harness lives in bench/ (built beside src/); loaded only when asked for.
      const { runBench } = (await import('../../bench/run.js')) as { runBench: (argv: readonly string[]) => Promise<number> }
      process.exitCode = await runBench(rest)
      return
    }
    case 'rebalance':
      await requireGitAnnex()
      process.exitCode = await runRebalance(rest, { cwd: process.cwd(), out: (s) => void process.stdout.write(s) })
      return
    case 'upload':
      process.exitCode = await runUpload(rest, { cwd: process.cwd(), env: process.env, stdout: process.stdout, stderr: process.stderr })
      return
    case 'serve':
    case 'demo':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(USAGE)
        return
      }
      if (cmd === 'demo') {
        await requireGitAnnex()
        return runDemo(rest)
      }
      {
        // The version check runs while the server's modules load: neither waits for the other.
        const cfg = parseServeArgs(rest, process.cwd())
        // Before the server's modules load (their loading already grows V8's young generation).
        capYoungGeneration(cfg.youngGenerationMiB)
        const [start] = await Promise.all([import('./serve.js'), requireGitAnnex()])
        return start.serve(cfg)
      }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE)
      return
    default:
      throw new ConfigError(`unknown command '${cmd}'\n${USAGE}`)
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const msg = err instanceof ConfigError ? err.message : err instanceof Error ? err.message : String(err)
  // No usable git-annex: one line that says what to install (the install script's words).
  process.stderr.write(err instanceof GitAnnexMissingError ? `${msg}\n` : `annex-proxy: ${msg}\n`)
  // git-annex-shell's refusals and broken sessions exit 1, as the reference's do.
  process.exit(err instanceof ConfigError && !(err instanceof ShellRefusal) && !(err instanceof GitAnnexMissingError) ? 2 : 1)
})
