import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  parseDf,
  parseFree,
  parseHostAddresses,
  parseMeminfo,
  parseNproc,
  ProbeParseError,
} from '../../src/cluster/host-probe.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = (name: string) =>
  readFileSync(path.join(repoRoot, 'test', 'fixtures', 'nvidia-h200-x4-node', name), 'utf8');

test('/proc/meminfo in bytes', () => {
  const info = parseMeminfo(fixture('meminfo.txt'));
  assert.equal(info.totalBytes, 528231220 * 1024);
  assert.equal(info.availableBytes, 527363044 * 1024);
  assert.equal(info.freeBytes, 525624184 * 1024);
  assert.equal(info.swapTotalBytes, 0);
  assert.equal(info.fields['Active(anon)'], 32 * 1024);
  assert.equal(info.fields.HugePages_Total, 0);
  assert.equal(info.fields.Hugepagesize, 2048 * 1024);
  assert.throws(() => parseMeminfo('nothing here'), ProbeParseError);
});

test('df -B1: one row per path asked', () => {
  const rows = parseDf(fixture('df.txt'));
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], {
    filesystem: '/dev/vda',
    sizeBytes: 270553174016,
    usedBytes: 17286660096,
    availableBytes: 252312129536,
    usePercent: 7,
    mountedOn: '/',
  });
  assert.deepEqual(
    parseDf('Filesystem 1B-blocks Used Available Use% Mounted on\nfs:/share 100 0 100 - /mnt/my share\n'),
    [{ filesystem: 'fs:/share', sizeBytes: 100, usedBytes: 0, availableBytes: 100, mountedOn: '/mnt/my share' }],
  );
});

test('nproc', () => {
  assert.equal(parseNproc(fixture('nproc.txt')), 64);
  assert.throws(() => parseNproc('sh: nproc: not found'), ProbeParseError);
});

test('free -b', () => {
  assert.deepEqual(parseFree(fixture('free.txt')), {
    mem: {
      total: 540908769280,
      used: 889012224,
      free: 538239164416,
      shared: 7675904,
      buffCache: 2090131456,
      available: 540019757056,
    },
    swap: { total: 0, used: 0, free: 0 },
  });
  assert.throws(() => parseFree('garbage'), ProbeParseError);
});

test('hostname -I, even inside a shell trace with errors around it', () => {
  assert.deepEqual(parseHostAddresses(fixture('ip.txt')), ['192.0.2.2', 'fd00::2']);
  assert.deepEqual(parseHostAddresses('127.0.1.1 \n'), ['127.0.1.1']);
});
