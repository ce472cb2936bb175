import { AbortedError } from '../errors.js'

/** Settles with `p`, or rejects when `signal` aborts first; never leaves a listener behind. */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new AbortedError('store aborted'))
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError('store aborted'))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
