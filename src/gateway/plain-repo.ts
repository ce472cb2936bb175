// A repository with no proxying configuration, served as itself: its LocalRepo and nothing
// more (no branch reader, no watcher, no long-lived process). What most repositories of a
// forge are; one that gains proxying settings is reopened as a Gateway by the registry.
import { openLocalRepo, type LocalRepoOptions } from '../remotes/local-repo.js'
import type { ServedRepo } from './registry.js'

export async function openPlainRepo(dir: string, opts: LocalRepoOptions): Promise<ServedRepo> {
  const self = await openLocalRepo(dir, opts)
  return {
    uuid: self.uuid,
    serves: (uuid) => uuid === self.uuid,
    lookup: async (uuid) => (uuid === self.uuid ? self : undefined),
    uuids: () => [self.uuid],
    close: () => self.close(),
  }
}
