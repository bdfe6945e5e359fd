import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePythonLiteral, PythonLiteralError, tryParsePythonDict } from '../../src/progress/python-literal.js';

test('parses a metrics dict repr with nan, inf, -inf, booleans, None and exponents', () => {
  const text =
    "{'rollout/raw_reward': 0.4375, 'rollout/response_len': 1523.5, 'perf/rollout_time': 12.03, " +
    "'train/grad_norm': nan, 'x/max': inf, 'x/min': -inf, 'ok': True, 'bad': False, 'none': None, " +
    "'lr': 1e-06, 'big': 1.5e+16, 'count': 32, 'neg': -3}";
  const value = parsePythonLiteral(text);
  assert.ok(value && typeof value === 'object' && !Array.isArray(value));
  assert.equal(value['rollout/raw_reward'], 0.4375);
  assert.ok(Number.isNaN(value['train/grad_norm']));
  assert.equal(value['x/max'], Infinity);
  assert.equal(value['x/min'], -Infinity);
  assert.equal(value.ok, true);
  assert.equal(value.bad, false);
  assert.equal(value.none, null);
  assert.equal(value.lr, 1e-6);
  assert.equal(value.big, 1.5e16);
  assert.equal(value.count, 32);
  assert.equal(value.neg, -3);
});

test('parses strings with escaped quotes, double quotes, unicode escapes and prefixes', () => {
  assert.deepEqual(
    parsePythonLiteral(
      String.raw`{'msg': 'it\'s "fine"', "k\"ey": "a\\b\n", 'u': '\u00e9\x41', 'b': b'raw', 'r': r'\d+'}`,
    ),
    {
      msg: `it's "fine"`,
      'k"ey': 'a\\b\n',
      u: 'éA',
      b: 'raw',
      r: '\\d+',
    },
  );
});

test('parses nested dicts, lists, tuples, sets, empty containers and trailing commas', () => {
  assert.deepEqual(
    parsePythonLiteral("{'a': {'b': [1, 2.5, (3, 4)], 'c': {}}, 'd': [], 'e': {1, 2}, 'f': (5,), 'g': [1, 2,],}"),
    {
      a: { b: [1, 2.5, [3, 4]], c: {} },
      d: [],
      e: [1, 2],
      f: [5],
      g: [1, 2],
    },
  );
  assert.deepEqual(parsePythonLiteral('{0: 1, 1.5: 2}'), { '0': 1, '1.5': 2 });
});

test('numpy and torch scalar reprs stand for their value', () => {
  assert.deepEqual(
    parsePythonLiteral(
      "{'a': np.float64(0.25), 'b': np.int64(7), 'c': tensor(1.5, device='cuda:0'), 'd': np.float32(nan)}",
    ),
    {
      a: 0.25,
      b: 7,
      c: 1.5,
      d: NaN,
    },
  );
});

test('malformed input throws PythonLiteralError with a position; tryParsePythonDict returns undefined', () => {
  assert.throws(() => parsePythonLiteral("{'a': 1"), PythonLiteralError);
  assert.throws(() => parsePythonLiteral("{'a': 1} extra"), /trailing text/);
  assert.throws(() => parsePythonLiteral("{'a': __import__('os')}"), PythonLiteralError);
  assert.throws(() => parsePythonLiteral("{'a': 'unterminated}"), /unterminated string/);
  assert.equal(tryParsePythonDict("{'a': 1,"), undefined);
  assert.equal(tryParsePythonDict('[1, 2]'), undefined);
  assert.deepEqual(tryParsePythonDict("{'a': 1}"), { a: 1 });
});
