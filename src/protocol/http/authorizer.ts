// Builds the request authorizer from the server's flags and environment.
import type { ServeConfig } from '../../config/config.js'
import { authConfigFromFlags, decide } from './auth.js'
import type { Authorize } from './plugin.js'

export function authorizerFor(cfg: ServeConfig, env: NodeJS.ProcessEnv): Authorize {
  const auth = authConfigFromFlags(cfg, env)
  return (req, action) => decide(auth, req, action)
}
