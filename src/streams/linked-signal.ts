// A signal for one operation that also fires when something longer-lived does, without
// AbortSignal.any: on Node 20 every AbortSignal.any call leaves an entry in each input
// signal that is never collected (nodejs/node#55351: 100 000 calls, +49 MiB), so a
// server-lifetime signal combined per request leaks for as long as the server runs.
// Here each source gets one listener, and dispose() removes them all (the pattern of
// undici's lib/api/abort-signal.js). Forgetting dispose() costs a listener on a
// source until it is collected or fires; it never grows a hidden table.

export interface LinkedSignal {
  /** Fires with the first source's reason, or with abort()'s. */
  readonly signal: AbortSignal
  /** Aborts this signal alone (not the sources). */
  abort(reason?: unknown): void
  /** Removes the listeners on the sources; idempotent. Call it when the operation ends. */
  dispose(): void
}

export function linkedSignal(...sources: readonly AbortSignal[]): LinkedSignal {
  const ac = new AbortController()
  const listening: AbortSignal[] = []
  const onAbort = function (this: AbortSignal) {
    ac.abort(this.reason)
    dispose()
  }
  const dispose = () => {
    for (const s of listening.splice(0)) s.removeEventListener('abort', onAbort)
  }
  for (const s of sources) {
    if (s.aborted) {
      ac.abort(s.reason)
      break
    }
    s.addEventListener('abort', onAbort, { once: true })
    listening.push(s)
  }
  if (ac.signal.aborted) dispose()
  return {
    signal: ac.signal,
    abort: (reason?: unknown) => {
      ac.abort(reason)
      dispose()
    },
    dispose,
  }
}
