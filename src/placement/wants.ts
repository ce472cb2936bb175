// Whether a cluster node wants a key (spec §3.4), from what the gateway knows: the
// node's preferred and required content, groups, groupwanted, trust and maxsize.
import type { Key } from '../keys/key.js'
import type { GatewaySnapshot } from '../gateway/gateway-config.js'
import type { Uuid } from '../remotes/remote.js'
import { isPreferredContent } from './preferred-content.js'

/**
 * A node with no expression wants everything (git-annex's default for proxied nodes).
 * `repoSizes` (bytes held, uploads in flight included) matter only with a maxsize.
 */
export function nodeWants(
  snap: GatewaySnapshot,
  uuid: Uuid,
  key: Key,
  file: string | undefined,
  holders: readonly Uuid[],
  repoSizes?: ReadonlyMap<string, number>,
  onSizesUsed?: () => void,
): boolean {
  return isPreferredContent(
    { wanted: snap.preferredContent.get(uuid), required: snap.requiredContent.get(uuid) },
    {
      uuid,
      key,
      file,
      locations: new Set(holders),
      groups: snap.groups,
      groupWanted: snap.groupPreferredContent,
      trust: snap.trust,
      maxSizes: snap.maxSize,
      repoSizes,
      onSizesUsed,
    },
    true,
  )
}
