// An S3 special remote's settings, read from its remote.log fields as git-annex
// 10.20250416 reads them (Remote/S3.hs s3Configuration, extractS3Info), into what the AWS
// SDK needs. Pure. Whether annex-proxy serves the remote natively at all is decided here
// too (nativeS3Refusal): what it cannot do byte-for-byte like git-annex goes through the
// gateway's own git-annex instead.
import { readSize } from '../../annex/data-units.js'
import { S3SettingsError } from '../../errors.js'
import { chunkConfigOf, type ChunkConfig } from '../special/chunks.js'

export interface S3Settings {
  readonly bucket: string
  /** Undefined: AWS itself (the SDK derives the endpoint from the region). */
  readonly endpoint: string | undefined
  readonly region: string
  readonly forcePathStyle: boolean
  readonly fileprefix: string
  /** exporttree=yes annexobjects=yes: keys live under `<fileprefix>.git/annex/objects/`. */
  readonly annexObjects: boolean
  /** S3 stores legacy `chunksize=` content unchunked, so only chunk= counts here. */
  readonly chunking: ChunkConfig
  /** partsize= in bytes, when set. */
  readonly partSize: number | undefined
  readonly storageClass: string
  /** x-amz-meta-<k>=<v> fields, as metadata <k> → <v>. */
  readonly metadata: Readonly<Record<string, string>>
  readonly publicRead: boolean
}

const AWS_DEFAULT_HOST = 's3.amazonaws.com'

const isYes = (v: string | undefined) => v !== undefined && /^(yes|true)$/i.test(v)

/** Why annex-proxy does not serve this S3 remote itself, or undefined when it does. */
export function nativeS3Refusal(config: ReadonlyMap<string, string>): string | undefined {
  const enc = config.get('encryption')
  if (enc !== undefined && enc !== 'none') return `encryption=${enc}`
  if (isYes(config.get('importtree'))) return 'importtree=yes'
  // The annexobjects area alone is not enough: keys exported into the tree are found through
  // git-annex's export database, which only git-annex reads.
  if (isYes(config.get('exporttree'))) return 'exporttree=yes'
  if (config.get('mungekeys') !== undefined) return `mungekeys=${config.get('mungekeys')}`
  const host = config.get('host')
  if (host !== undefined && /(^|\.)archive\.org$/i.test(host)) return 'an Internet Archive host'
  if (config.get('signature') === 'anonymous') return 'signature=anonymous'
  if ([...config.keys()].some((k) => k.startsWith('x-archive-'))) return 'x-archive-* headers'
  return undefined
}

/** aws's s3HostName for a datacenter (`US`, `EU`, or a region name). */
function datacenterRegion(dc: string): string {
  if (dc === 'US') return 'us-east-1'
  if (dc === 'EU') return 'eu-west-1'
  return dc.toLowerCase()
}

export function parseS3Settings(config: ReadonlyMap<string, string>): S3Settings {
  const bucket = config.get('bucket')
  if (!bucket) throw new S3SettingsError('S3 bucket not configured')
  const host = config.get('host') ?? AWS_DEFAULT_HOST
  const datacenter = config.get('datacenter') ?? 'US'
  const protoSetting = config.get('protocol')
  if (protoSetting !== undefined && protoSetting !== 'http' && protoSetting !== 'https') throw new S3SettingsError(`bad S3 protocol value: ${protoSetting}`)
  let port: number
  const portSetting = config.get('port')
  if (portSetting !== undefined) {
    if (!/^\d+$/.test(portSetting)) throw new S3SettingsError(`bad S3 port value: ${portSetting}`)
    port = Number(portSetting)
    // git-annex: protocol=https overrides the default port 80.
    if (port === 80 && protoSetting === 'https') port = 443
  } else {
    port = protoSetting === 'https' ? 443 : 80
  }
  const protocol = protoSetting ?? (port === 443 ? 'https' : 'http')
  const style = config.get('requeststyle')
  if (style !== undefined && style !== 'path') throw new S3SettingsError(`bad S3 requeststyle value: ${style}`)
  const region = config.get('region') ?? datacenterRegion(datacenter)
  // AWS itself: the SDK's own endpoint for the region, over https (git-annex would use plain http).
  const endpoint = host === AWS_DEFAULT_HOST ? undefined : `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`
  const partSizeSetting = config.get('partsize')
  const partSize = partSizeSetting === undefined ? undefined : readSize(partSizeSetting)
  const legacyFree = new Map(config)
  legacyFree.delete('chunksize')
  const metadata: Record<string, string> = {}
  for (const [k, v] of config) if (k.startsWith('x-amz-meta-')) metadata[k.slice('x-amz-meta-'.length)] = v
  return {
    bucket: bucket.toLowerCase(),
    endpoint,
    region,
    forcePathStyle: style === 'path',
    fileprefix: config.get('fileprefix') ?? '',
    annexObjects: isYes(config.get('exporttree')) && isYes(config.get('annexobjects')),
    chunking: isYes(config.get('exporttree')) ? { kind: 'none' } : chunkConfigOf(legacyFree),
    partSize: partSize !== undefined && partSize > 0 ? partSize : undefined,
    storageClass: config.get('storageclass') ?? 'STANDARD',
    metadata,
    publicRead: isYes(config.get('public')),
  }
}
