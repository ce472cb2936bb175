// How far a cluster's content is when reached through another gateway (issue #12, hop-aware
// cost; upstream defers it), from what this gateway can see: proxy.log says which
// repositories each gateway proxies. A node this gateway reaches itself is 1 hop. Through
// gateway G it is 2 when G proxies a node of the cluster itself, and one more for each
// further gateway of the cluster G can only reach it through. Pure, so it is testable.

/** proxy.log: for each proxying repository, the UUIDs it proxies. */
export type ProxiedBy = ReadonlyMap<string, ReadonlyArray<{ readonly uuid: string }>>

/** Deeper chains than this are not told apart (and a loop cannot make the answer grow). */
const MAX_HOPS = 8

/**
 * Hops from this gateway to cluster `cluster`'s content through gateway `gateway`: at
 * least 2 (the gateway, then a node). A gateway of the cluster is a repository whose
 * proxy.log lists the cluster.
 */
export function hopsVia(proxied: ProxiedBy, gateway: string, cluster: string): number {
  const isGatewayOf = (u: string) => (proxied.get(u) ?? []).some((e) => e.uuid === cluster)
  // Breadth first over gateways of the cluster: the first one proxying a plain node ends it.
  let level = [gateway]
  const seen = new Set(level)
  let deepest = 2
  for (let hops = 2; hops <= MAX_HOPS && level.length > 0; hops++) {
    deepest = hops
    const next: string[] = []
    for (const g of level) {
      for (const e of proxied.get(g) ?? []) {
        if (e.uuid === cluster) continue
        if (!isGatewayOf(e.uuid)) return hops
        if (!seen.has(e.uuid)) {
          seen.add(e.uuid)
          next.push(e.uuid)
        }
      }
    }
    level = next
  }
  // No plain node seen behind the chain (proxy.log not synced yet, or a loop): at least
  // the gateways walked, then a node.
  return deepest
}
