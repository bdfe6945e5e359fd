// slime / Megatron log lines (stdout of the Ray job) -> typed events. Pure: no I/O, no clock.
import { tryParsePythonDict, type PyDict } from './python-literal.js';

/** Where a line came from, when Ray prefixed it with `(ActorName pid=..., ip=...)`. */
export interface LineSource {
  actor?: string;
  pid?: number;
  ip?: string;
}

export type Metrics = Record<string, number>;

interface EventBase {
  source?: LineSource;
}

export type SlimeLogEvent = EventBase &
  (
    | { type: 'rollout-done'; rollout: number; metrics: Metrics }
    | { type: 'train-perf'; rollout: number; metrics: Metrics }
    | { type: 'rollout-stats'; rollout: number; metrics: Metrics }
    | { type: 'train-step'; step: number; metrics: Metrics }
    | { type: 'checkpoint-saving'; iteration: number; dir: string; format?: string }
    | { type: 'checkpoint-saved'; iteration: number; dir: string }
    | { type: 'checkpoint-loaded'; iteration: number; dir: string }
    | { type: 'eval'; rollout: number; metrics: Metrics; score?: number; scoreKey?: string }
    | { type: 'engine-unhealthy'; engine: number; message: string }
    | { type: 'engines-recovered'; count: number }
    | {
        type: 'placement-group-waiting';
        gpusNeeded: number;
        elapsedSeconds: number;
        gpusRegistered: number;
        gpusAvailable: number;
      }
    | { type: 'error'; errorType: string; message: string; line: string }
  );

export type SlimeLogEventType = SlimeLogEvent['type'];

export interface ParseOptions {
  /** The eval metric that is the run's score (e.g. `eval/aime`); by default the first `eval/<dataset>` key. */
  evalScoreKey?: string;
}

// CSI sequences (colours, cursor moves) and the two-byte escapes terminals understand.
// eslint-disable-next-line no-control-regex
const ansiPattern = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]/g;
const rayPrefixPattern = /^\((?<actor>[^()]*?)\s*pid=(?<pid>\d+)(?:,\s*ip=(?<ip>[^)\s]+))?\)\s?/;
const rayDedupSuffixPattern = /\s*\[repeated \d+x across cluster\]\s*$/;

export function stripAnsi(text: string): string {
  return text.replace(ansiPattern, '');
}

/** Remove colour codes, Ray's `(Actor pid=.., ip=..)` prefix and its `[repeated Nx across cluster]` suffix. */
export function cleanLogLine(rawLine: string): { text: string; source?: LineSource } {
  let text = stripAnsi(rawLine).replace(/\r$/, '');
  let source: LineSource | undefined;
  const prefix = rayPrefixPattern.exec(text);
  if (prefix?.groups) {
    const { actor, pid, ip } = prefix.groups;
    source = { pid: Number(pid) };
    if (actor) source.actor = actor.trim();
    if (ip) source.ip = ip;
    text = text.slice(prefix[0].length);
  }
  text = text.replace(rayDedupSuffixPattern, '');
  return source ? { text, source } : { text };
}

type LineMatcher = (text: string, options: ParseOptions) => SlimeLogEvent | undefined;

const dictLinePattern = (word: string) => new RegExp(`(?:^|[\\s\\]|>:-])${word} (\\d+): (\\{.*\\})\\s*$`);
const perfPattern = dictLinePattern('perf');
const rolloutPattern = dictLinePattern('rollout');
const stepPattern = dictLinePattern('step');
const evalPattern = dictLinePattern('eval');
const savingPattern = /saving checkpoint at iteration\s+(\d+) to (.+?)(?: in (\S+) format)?\s*$/;
const savedPattern = /successfully saved checkpoint from iteration\s+(\d+) to (.+?)(?:\s+\[[^\]]*\])?\s*$/;
const loadedPattern = /successfully loaded checkpoint from (.+?)(?:\s+\[[^\]]*\])? at iteration\s+(\d+)/;
const unhealthyPattern = /Health check failed for rollout engine (\d+)\b(.*)$/;
const recoveredPattern = /Recovered (\d+) dead rollout engines?/;
const placementPattern =
  /Waiting for placement group of ([\d.]+) GPUs \(elapsed ([\d.]+)s\): ([\d.]+) GPUs registered with Ray, ([\d.]+) available/;
// The last line of a Python traceback: `ValueError: msg`, `torch.OutOfMemoryError: ...`,
// `ray.exceptions.RayTaskError(ValueError): ...` or a bare `KeyboardInterrupt`.
const errorPattern =
  /^(?<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Failure)(?:\([\w.]+\))?)(?::\s?(?<message>.*))?$/;

const matchers: LineMatcher[] = [
  (text) => {
    // Both sides print `perf {id}:`; the rollout side's dict has perf/rollout_time and rollout/* keys, the trainer's
    // has its timings (perf/train_time, perf/step_time, ...).
    const m = perfPattern.exec(text);
    const metrics = m && numericDict(m[2]!);
    if (!metrics) return undefined;
    const rolloutSide = Object.keys(metrics).some((key) => key === 'perf/rollout_time' || key.startsWith('rollout/'));
    return { type: rolloutSide ? 'rollout-done' : 'train-perf', rollout: Number(m[1]), metrics };
  },
  (text) => {
    const m = rolloutPattern.exec(text);
    const metrics = m && numericDict(m[2]!);
    return metrics ? { type: 'rollout-stats', rollout: Number(m[1]), metrics } : undefined;
  },
  (text) => {
    const m = stepPattern.exec(text);
    const metrics = m && numericDict(m[2]!);
    return metrics ? { type: 'train-step', step: Number(m[1]), metrics } : undefined;
  },
  (text, options) => {
    const m = evalPattern.exec(text);
    const metrics = m && numericDict(m[2]!);
    if (!metrics) return undefined;
    const scoreKey = options.evalScoreKey ?? primaryEvalKey(Object.keys(metrics));
    const score = scoreKey === undefined || !Object.hasOwn(metrics, scoreKey) ? undefined : metrics[scoreKey];
    return score === undefined
      ? { type: 'eval', rollout: Number(m[1]), metrics }
      : { type: 'eval', rollout: Number(m[1]), metrics, score, scoreKey };
  },
  (text) => {
    const m = savedPattern.exec(text);
    return m ? { type: 'checkpoint-saved', iteration: Number(m[1]), dir: m[2]! } : undefined;
  },
  (text) => {
    const m = savingPattern.exec(text);
    if (!m) return undefined;
    const event: SlimeLogEvent = { type: 'checkpoint-saving', iteration: Number(m[1]), dir: m[2]! };
    if (m[3]) event.format = m[3];
    return event;
  },
  (text) => {
    const m = loadedPattern.exec(text);
    return m ? { type: 'checkpoint-loaded', iteration: Number(m[2]), dir: m[1]! } : undefined;
  },
  (text) => {
    const m = unhealthyPattern.exec(text);
    return m ? { type: 'engine-unhealthy', engine: Number(m[1]), message: text.slice(m.index).trim() } : undefined;
  },
  (text) => {
    const m = recoveredPattern.exec(text);
    return m ? { type: 'engines-recovered', count: Number(m[1]) } : undefined;
  },
  (text) => {
    const m = placementPattern.exec(text);
    if (!m) return undefined;
    return {
      type: 'placement-group-waiting',
      gpusNeeded: Number(m[1]),
      elapsedSeconds: Number(m[2]),
      gpusRegistered: Number(m[3]),
      gpusAvailable: Number(m[4]),
    };
  },
  (text) => {
    const m = errorPattern.exec(text.trimEnd());
    if (!m?.groups) return undefined;
    return { type: 'error', errorType: m.groups.type!, message: (m.groups.message ?? '').trim(), line: text.trimEnd() };
  },
];

/** Parse one line of the job's output; undefined when it carries none of the events keel follows. */
export function parseSlimeLogLine(rawLine: string, options: ParseOptions = {}): SlimeLogEvent | undefined {
  const { text, source } = cleanLogLine(rawLine);
  if (text.trim() === '') return undefined;
  for (const matcher of matchers) {
    const event = matcher(text, options);
    if (event && !countsInRange(event)) return undefined;
    if (event) return source ? { ...event, source } : event;
  }
  return undefined;
}

/** Rollout, step and iteration ids, engine indexes and counts: whole numbers up to 10^12, else the line is not slime's. */
const maxLoggedCount = 1e12;

function countsInRange(event: SlimeLogEvent): boolean {
  const record = event as unknown as Record<string, unknown>;
  for (const key of ['rollout', 'step', 'iteration', 'engine', 'count']) {
    const value = record[key];
    if (
      value !== undefined &&
      !(Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= maxLoggedCount)
    )
      return false;
  }
  return true;
}

/**
 * The eval score key: the first `eval/<dataset>` key that is not derived from another one
 * (`eval/aime-truncated_ratio` is derived from `eval/aime`).
 */
export function primaryEvalKey(keys: string[]): string | undefined {
  const candidates = keys.filter((key) => /^eval\/[^/]+$/.test(key));
  const derived = (key: string) =>
    candidates.some((other) => other !== key && key.startsWith(other) && /^[-_]/.test(key.slice(other.length)));
  return candidates.find((key) => !derived(key));
}

function numericDict(text: string): Metrics | undefined {
  const dict = tryParsePythonDict(text);
  return dict ? numericValues(dict) : undefined;
}

/** Keep the numeric values (numbers and booleans as 0/1); nested values are dropped. */
function numericValues(dict: PyDict): Metrics {
  const metrics: Metrics = {};
  for (const [key, value] of Object.entries(dict)) {
    const metric = typeof value === 'number' ? value : typeof value === 'boolean' ? (value ? 1 : 0) : undefined;
    // Keys come from the trainer's log: own properties, so `__proto__` is a metric, never the prototype.
    if (metric !== undefined)
      Object.defineProperty(metrics, key, { value: metric, enumerable: true, writable: true, configurable: true });
  }
  return metrics;
}
