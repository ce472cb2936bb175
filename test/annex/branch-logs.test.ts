// Branch log parsers (spec §7.1, §3.2, §3.6): lines as git-annex 10.20250416 wrote them
// on a real gateway (recipes.md), the clock rules, and fast-check properties.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { parseKey } from '../../src/keys/key.js'
import { isClusterUuid } from '../../src/annex/uuid.js'
import {
  compareClocks,
  configEscape,
  configUnescape,
  formatClock,
  isLegalRemoteName,
  journalFileName,
  locationLogPath,
  parseClock,
  parseClusterLog,
  parseExpressionLog,
  parseGroupLog,
  parseGroupPreferredContentLog,
  parseLocationLog,
  parseMaxSizeLog,
  parseNewLog,
  parseOldLog,
  parseProxyLog,
  parseRemoteConfigs,
  parseRemoteLog,
  parseTrustLog,
  parseUuidLog,
  presentUuids,
} from '../../src/annex/branch-logs.js'

// Copied from a gateway built with initcluster/updatecluster/updateproxy, group, wanted,
// required, groupwanted, maxsize, untrust and setpresentkey (git-annex 10.20250416).
const N1 = '5c854a84-8f4c-494f-9c40-08ca2b06e612'
const N2 = '0421734f-03b6-4f7c-ab82-9bdf65405199'
const N3 = 'cd8136be-0a5b-438a-9c8b-38aee248f445'
const DSR = '4cad34fd-cac9-4bd6-98ae-e30509ffcaa6'
const GW = 'fd35e3ce-d580-4425-b2ea-c536f3332295'
const CLUSTER = 'ac45fc3d-be6d-8ce3-b37e-73caf280f379'

const REAL = {
  cluster: `1795626965s ${CLUSTER} ${N2} ${N1} ${N3}\n`,
  proxy: `1795626966s ${GW} ${N2}:n2 ${DSR}:dsr ${N1}:n1 ${CLUSTER}:mycluster ${N3}:n3\n`,
  groupPreferred: '1795626966s g1 balanced=g1:2\n',
  group: `${N2} archive g1 timestamp=1795626966s\n${N1} g1 timestamp=1795626965s\n`,
  maxsize: `1795626966s ${N1} 1000\n`,
  preferred: `${N1} balanced=g1 or present timestamp=1795626965s\n`,
  remote: `${DSR} encryption=none name=dsr type=directory timestamp=1795626965s\n`,
  required: `${N2} include=* timestamp=1795626965s\n`,
  trust: `${DSR} 0 timestamp=1795626966s\n`,
  uuid: `${DSR} dsr timestamp=1795626965s\n${CLUSTER} cluster mycluster timestamp=1795626965s\n${GW} gw timestamp=1795626965s\n`,
  location: `1795626967s 0 ${N2}\n1795626966s 1 ${N1}\n`,
}

describe('real git-annex lines', () => {
  test('cluster.log and proxy.log', () => {
    assert.deepEqual(parseClusterLog(REAL.cluster), new Map([[CLUSTER, new Set([N2, N1, N3])]]))
    assert.deepEqual(
      parseProxyLog(REAL.proxy).get(GW as never)?.map((p) => `${p.uuid}:${p.name}`),
      [`${N2}:n2`, `${DSR}:dsr`, `${N1}:n1`, `${CLUSTER}:mycluster`, `${N3}:n3`],
    )
    assert.ok(isClusterUuid(CLUSTER))
    for (const u of [N1, N2, N3, DSR, GW]) assert.ok(!isClusterUuid(u))
  })

  test('uuid, remote, trust, group, wanted, required, groupwanted, maxsize', () => {
    assert.equal(parseUuidLog(REAL.uuid).get(CLUSTER as never), 'cluster mycluster')
    assert.equal(parseUuidLog(REAL.uuid).get(GW as never), 'gw')
    assert.deepEqual(parseRemoteLog(REAL.remote).get(DSR as never), new Map([['encryption', 'none'], ['name', 'dsr'], ['type', 'directory']]))
    assert.deepEqual(parseTrustLog(REAL.trust), new Map([[DSR, 'untrusted']]))
    assert.deepEqual(parseGroupLog(REAL.group), new Map([[N2, new Set(['archive', 'g1'])], [N1, new Set(['g1'])]]))
    assert.deepEqual(parseExpressionLog(REAL.preferred), new Map([[N1, 'balanced=g1 or present']]))
    assert.deepEqual(parseExpressionLog(REAL.required), new Map([[N2, 'include=*']]))
    assert.deepEqual(parseGroupPreferredContentLog(REAL.groupPreferred), new Map([['g1', 'balanced=g1:2']]))
    assert.deepEqual(parseMaxSizeLog(REAL.maxsize), new Map([[N1, 1000]]))
  })

  test('a dead repository: empty group set (double space) and trust X', () => {
    const g = parseGroupLog(`${N3}  timestamp=1795626970s\n${N3} g1 timestamp=1795626960s\n`)
    assert.deepEqual(g.get(N3 as never), new Set())
    const trust = parseTrustLog(`${N3} X timestamp=1795626970s\n`)
    assert.equal(trust.get(N3 as never), 'dead')
    // Old trust.log lines listed trusted repositories without a value; unknown levels are semitrusted.
    assert.deepEqual(parseTrustLog(`${N1}\n${N2} timestamp=1s\n${DSR} ? timestamp=1s\n${GW} Z timestamp=1s\n${N3} 10 timestamp=1s\n`), new Map([[N1, 'trusted'], [N2, 'trusted'], [DSR, 'semitrusted'], [GW, 'semitrusted']]))
    // Readers drop dead nodes from clusters, and the cluster then derives only from live ones.
    assert.deepEqual(parseClusterLog(REAL.cluster, trust).get(CLUSTER as never), new Set([N2, N1]))
    const clusters = parseClusterLog(REAL.cluster, trust)
    assert.deepEqual(presentUuids(`1s 1 ${N3}\n`, clusters), [N3])
  })

  test('location log: newest line per UUID, clusters derived from present nodes', () => {
    const l = parseLocationLog(REAL.location)
    assert.equal(l.get(N2 as never)?.status, 'missing')
    assert.equal(l.get(N1 as never)?.status, 'present')
    const clusters = parseClusterLog(REAL.cluster)
    assert.deepEqual(presentUuids(REAL.location, clusters), [N1, CLUSTER].sort())
    assert.deepEqual(presentUuids(`1795626967s 0 ${N1}\n`, clusters), [])
    assert.deepEqual(presentUuids(`1795626967s X ${N1}\n`, clusters), [])
  })

  test('location log path and journal file name (spec §7.2)', () => {
    assert.equal(locationLogPath(parseKey('SHA256E-s5--abc.txt')), '818/af3/SHA256E-s5--abc.txt.log')
    assert.equal(journalFileName('818/af3/SHA256E-s5--a_b.txt.log'), '818_af3_SHA256E-s5--a__b.txt.log')
    assert.equal(journalFileName('proxy.log'), 'proxy.log')
  })
})

describe('clock rules', () => {
  test('parse and compare', () => {
    assert.equal(compareClocks(parseClock('1795548033s'), parseClock('1795548033')), 0)
    assert.equal(compareClocks(parseClock('1795548033.5s'), parseClock('1795548033.49999999999999999999s')), 1)
    assert.equal(compareClocks(undefined, parseClock('-5s')), -1)
    assert.equal(parseClock('12.s'), undefined)
    assert.equal(parseClock('x1s'), undefined)
    assert.equal(parseClock('1ss'), undefined)
    // Utility/TimeStamp.hs mkPOSIXTime: the fraction is subtracted only below zero.
    assert.equal(compareClocks(parseClock('-0.5s'), parseClock('0.5s')), 0)
    assert.equal(compareClocks(parseClock('-1.5s'), parseClock('-1s')), -1)
    assert.equal(formatClock(parseClock('1795548033s')), '1795548033s')
    assert.equal(formatClock(parseClock('12.050s')), '12.050s')
  })

  test('ties: map logs keep the later line, location logs the earlier one', () => {
    assert.equal(parseExpressionLog(`${N1} a timestamp=5s\n${N1} b timestamp=5s\n`).get(N1 as never), 'b')
    assert.equal(parseGroupPreferredContentLog('5s g a\n5s g b\n').get('g'), 'b')
    assert.equal(parseLocationLog(`5s 1 ${N1}\n5s 0 ${N1}\n`).get(N1 as never)?.status, 'present')
  })

  test('an old-style line without timestamp is older than any dated one', () => {
    assert.equal(parseUuidLog(`${N1} new timestamp=1s\n${N1} old\n`).get(N1 as never), 'new')
    assert.equal(parseUuidLog(`${N1} only one\n`).get(N1 as never), 'only one')
  })
})

test('remote.log: a sameas remote inherits encryption/chunksize/… from its parent only (real lines)', () => {
  const text = `${DSR} encryption=none name=dsr type=directory timestamp=1795626965s\n5d6ea7dc-ed60-4486-82d4-3462e89cef76 sameas-name=dsr2 sameas-uuid=${DSR} type=directory encryption=shared timestamp=1795627794s\n`
  const m = parseRemoteConfigs(text)
  assert.deepEqual(
    m.get('5d6ea7dc-ed60-4486-82d4-3462e89cef76' as never),
    new Map([['sameas-name', 'dsr2'], ['sameas-uuid', DSR], ['type', 'directory'], ['encryption', 'none']]),
  )
  assert.deepEqual(m.get(DSR as never), parseRemoteLog(text).get(DSR as never))
})

describe('odd lines', () => {
  test('lines that do not parse are skipped, \\r and blank lines are line ends', () => {
    const text = `garbage\n\r\n 1s ${N1}\n1s ${N1} 1000\r\r\n2s ${N2} lots\nx ${N2} 5\n3s  7\n`
    assert.deepEqual(parseMaxSizeLog(text), new Map([[N1, 1000]]))
    assert.deepEqual(parseNewLog('1s f\n', (v) => v), new Map())
    assert.deepEqual(parseNewLog('1s f \n', (v) => v).get('f')?.value, '')
    assert.equal(parseOldLog(` ${N1} x timestamp=1s\n`, (v) => v).size, 0)
  })

  test('cluster.log: non-cluster fields dropped; double spaces spoil a line; trailing space is fine', () => {
    assert.equal(parseClusterLog(`1s ${N1} ${N2}\n`).size, 0)
    assert.equal(parseClusterLog(`1s ${CLUSTER} ${N1}  ${N2}\n`).size, 0)
    assert.deepEqual(parseClusterLog(`1s ${CLUSTER} ${N1} \n`).get(CLUSTER as never), new Set([N1]))
    assert.deepEqual(parseClusterLog(`1s ${CLUSTER} \n`).get(CLUSTER as never), new Set())
  })

  test('proxy.log: illegal remote names are dropped, a word without a name spoils the line', () => {
    const m = parseProxyLog(`1s ${GW} ${N1}:ok ${N2}:-bad ${N3}:a/b ${DSR}:x.y_z-1\n`)
    assert.deepEqual(m.get(GW as never)?.map((p) => p.name), ['ok', 'x.y_z-1'])
    assert.equal(parseProxyLog(`1s ${GW} ${N1}:ok ${N2}\n`).size, 0)
    assert.equal(parseProxyLog(`1s ${GW} ${N1}:\n`).size, 0)
    assert.deepEqual(parseProxyLog(`1s ${GW} \n`).get(GW as never), [])
  })

  test('legal remote names (Git/Remote.hs makeLegalName)', () => {
    for (const n of ['origin', 'n1', 'a.b', 'a-b', 'a_b', '_x', 'ünï']) assert.ok(isLegalRemoteName(n), n)
    for (const n of ['', '.x', '-x', 'a/b', 'a b', 'a:b', 'a\tb', 'a\u001b']) assert.ok(!isLegalRemoteName(n), n)
  })

  test('remote.log values are unescaped (&<code>;), keys are not', () => {
    const m = parseRemoteLog(`${DSR} name=dsr directory=/a&32;b&38;c k&32;=v timestamp=1s\n`)
    assert.deepEqual(m.get(DSR as never), new Map([['name', 'dsr'], ['directory', '/a b&c'], ['k&32;', 'v']]))
  })
})

describe('properties', () => {
  const uuid = fc.uuid()
  const clock = fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 12n }), fc.integer({ min: 0, max: 6 })).map(([n, scale]) => ({ n, scale }))
  const fmt = (c: { n: bigint; scale: number }) => formatClock(c)

  test('location logs: the result does not depend on line order when clocks are distinct', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(clock, fc.constantFrom('1', '0', 'X'), fc.constantFrom(N1, N2, N3)), {
          selector: ([c]) => `${c.n * 10n ** BigInt(6 - c.scale)}`,
          maxLength: 20,
        }),
        fc.infiniteStream(fc.nat()),
        (lines, rnd) => {
          const text = (ls: typeof lines) => ls.map(([c, s, u]) => `${fmt(c)} ${s} ${u}\n`).join('')
          const shuffled = [...lines].sort(() => (rnd.next().value % 3) - 1)
          const a = [...parseLocationLog(text(lines))].map(([u, l]) => [u, l.status]).sort()
          const b = [...parseLocationLog(text(shuffled))].map(([u, l]) => [u, l.status]).sort()
          assert.deepEqual(a, b)
        },
      ),
    )
  })

  test('map logs: the result does not depend on line order when clocks are distinct', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(clock, fc.constantFrom(N1, N2), fc.stringMatching(/^[a-z=* ]{0,12}$/)), {
          selector: ([c]) => `${c.n * 10n ** BigInt(6 - c.scale)}`,
          maxLength: 20,
        }),
        (lines) => {
          const old = (ls: typeof lines) => ls.map(([c, u, v]) => `${u} ${v} timestamp=${fmt(c)}\n`).join('')
          const neu = (ls: typeof lines) => ls.map(([c, u, v]) => `${fmt(c)} ${u} ${v}\n`).join('')
          const rev = [...lines].reverse()
          assert.deepEqual(parseExpressionLog(old(lines)), parseExpressionLog(old(rev)))
          assert.deepEqual(parseGroupPreferredContentLog(neu(lines)), parseGroupPreferredContentLog(neu(rev)))
        },
      ),
    )
  })

  test('the newest entry wins', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 1000 }), fc.constantFrom('1', '0')), { minLength: 1, maxLength: 15 }), (ls) => {
        const uniq = [...new Map(ls.map(([c, s]) => [c, s])).entries()]
        const text = uniq.map(([c, s]) => `${c}s ${s} ${N1}\n`).join('')
        const newest = uniq.reduce((a, b) => (b[0] > a[0] ? b : a))
        assert.equal(parseLocationLog(text).get(N1 as never)?.status, newest[1] === '1' ? 'present' : 'missing')
      }),
    )
  })

  test('clock order agrees with numeric order', () => {
    fc.assert(
      fc.property(clock, clock, (a, b) => {
        const x = Number(a.n) / 10 ** a.scale
        const y = Number(b.n) / 10 ** b.scale
        const c = compareClocks(parseClock(fmt(a)), parseClock(fmt(b)))
        if (Math.abs(x - y) > 1e-3) assert.equal(Math.sign(c), Math.sign(x - y))
        assert.equal(compareClocks(parseClock(fmt(a)), a), 0)
      }),
    )
  })

  test('arbitrary text never throws, from any parser', () => {
    const parsers = [parseUuidLog, parseTrustLog, parseGroupLog, parseExpressionLog, parseRemoteLog, parseGroupPreferredContentLog, parseMaxSizeLog, parseClusterLog, parseProxyLog, parseLocationLog, presentUuids]
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ unit: 'grapheme' }), fc.constantFrom(' ', 'timestamp=', '1s', ':', 'ac', N1, '\n', '\r', '&32;', '&')), { maxLength: 30 }), (parts) => {
        const text = parts.join('')
        for (const p of parsers) p(text)
      }),
      { numRuns: 500 },
    )
  })

  test('unknown lines interleaved with known ones are ignored', () => {
    fc.assert(
      fc.property(fc.array(fc.string().filter((s) => !/[\r\n]/.test(s) && !/^\S+ \S+ /.test(s) && !s.includes(' timestamp=')), { maxLength: 5 }), (junk) => {
        const text = [...junk, REAL.proxy.trim(), ...junk].join('\n')
        assert.deepEqual(parseProxyLog(text).get(GW as never)?.length, 5)
        assert.equal(parseClusterLog([...junk, REAL.cluster.trim()].join('\n')).get(CLUSTER as never)?.size, 3)
      }),
    )
  })

  test('configEscape / configUnescape round trip', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (s) => assert.equal(configUnescape(configEscape(s)), s)))
  })

  test('random UUIDs are never cluster UUIDs unless made so', () => {
    fc.assert(
      fc.property(uuid, (u) => {
        const c = `ac${u.slice(2, 14)}8${u.slice(15)}`
        assert.ok(isClusterUuid(c))
        if (!u.startsWith('ac') || u[14] !== '8') assert.ok(!isClusterUuid(u))
      }),
    )
  })
})
