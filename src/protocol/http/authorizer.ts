// Interim adapter from ServeConfig to an Authorize function; replaced by the full
// p2phttp permission matrix in auth.ts.
import type { ServeConfig } from '../../config/config.js'
import type { Action, Authorize } from './plugin.js'

export function authorizerFor(cfg: ServeConfig, _env: NodeJS.ProcessEnv): Authorize {
  return (_req, action: Action) => {
    if (cfg.wideopen) return { ok: true }
    if (cfg.unauthAppendonly && action !== 'remove') return { ok: true }
    if (cfg.unauthReadonly && (action === 'read' || (action === 'lock' && !cfg.unauthNolocking))) return { ok: true }
    return { ok: false, status: 401, body: '', headers: { 'WWW-Authenticate': 'Basic realm="git-annex", charset="UTF-8"' } }
  }
}
