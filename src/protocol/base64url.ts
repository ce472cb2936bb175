// The one base64 decoder of the wire formats: the reference decodes both `[base64]`
// wrapped values (spec §2.2, P2P/Http/Types.hs decodeB64Text) and Basic credentials with
// sandi's Codec.Binary.Base64Url, whose rules this reproduces: whole quads, then
// optionally ONE padded quad ("xx==" or "xxx=") after which the rest of the input is
// ignored; bits under the padding need not be zero; 1-3 trailing characters are an error.

const PAD = 0x40
const BAD = 0x80
const URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

function table(extra: Readonly<Record<string, number>>): Uint8Array {
  const t = new Uint8Array(256).fill(BAD)
  for (let i = 0; i < 64; i++) t[URL_ALPHABET.charCodeAt(i)] = i
  t['='.charCodeAt(0)] = PAD
  for (const [c, v] of Object.entries(extra)) t[c.charCodeAt(0)] = v
  return t
}

const URL_ONLY = table({})
const EITHER = table({ '+': 62, '/': 63 })

export interface DecodeOptions {
  /**
   * Also take the standard alphabet's `+` and `/` (where the reference would refuse them):
   * for Basic credentials, which RFC 7617 clients such as curl encode that way.
   */
  readonly standardAlphabet?: boolean
}

/** The bytes `s` encodes, or undefined where sandi's decoder fails. */
export function decodeBase64Url(s: string, opts: DecodeOptions = {}): Buffer | undefined {
  const t = opts.standardAlphabet ? EITHER : URL_ONLY
  const at = (i: number) => {
    const c = s.charCodeAt(i)
    return c < 256 ? t[c]! : BAD
  }
  const out: number[] = []
  let i = 0
  for (; i + 4 <= s.length; i += 4) {
    const a = at(i)
    const b = at(i + 1)
    const c = at(i + 2)
    const d = at(i + 3)
    if ((a | b | c | d) < PAD) {
      out.push(((a << 2) | (b >> 4)) & 0xff, ((b << 4) | (c >> 2)) & 0xff, ((c << 6) | d) & 0xff)
      continue
    }
    if ((a | b) < PAD && c === PAD && d === PAD) {
      out.push(((a << 2) | (b >> 4)) & 0xff)
      return Buffer.from(out)
    }
    if ((a | b | c) < PAD && d === PAD) {
      out.push(((a << 2) | (b >> 4)) & 0xff, ((b << 4) | (c >> 2)) & 0xff)
      return Buffer.from(out)
    }
    return undefined
  }
  return i === s.length ? Buffer.from(out) : undefined
}

/** Padded base64url, as the reference's encoder writes it. */
export function encodeBase64Url(b: Uint8Array): string {
  const s = Buffer.from(b).toString('base64url')
  return s + '='.repeat((4 - (s.length % 4)) % 4)
}
