// The job's output -> events and a running summary. Line parsing lives in slime-log-lines.ts; the follower here
// consumes output chunk by chunk (lines may be split across chunks).
import { parseSlimeLogLine, type Metrics, type ParseOptions, type SlimeLogEvent } from './slime-log-lines.js';

export * from './slime-log-lines.js';

export interface EvalRecord {
  metrics: Metrics;
  score?: number;
  scoreKey?: string;
}

export interface SlimeLogSummary {
  /** The first rollout id the job logged (a perf or rollout line): after a resume it must be tracker + 1. */
  firstRollout?: number;
  lastRollout?: number;
  lastTrainStep?: number;
  lastCheckpointSaved?: { iteration: number; dir: string };
  /** A save that started and has not been reported done (a crash now leaves a partial iter_ directory). */
  checkpointInProgress?: { iteration: number; dir: string };
  lastCheckpointLoaded?: { iteration: number; dir: string };
  /** Evals by rollout id (plain object so the summary serialises as JSON). */
  evals: Record<number, EvalRecord>;
  lastError?: { errorType: string; message: string; line: string };
  engineFailures: number;
  enginesRecovered: number;
  /** Set while slime waits for GPUs; cleared by the next rollout. */
  waitingForGpus?: { gpusNeeded: number; gpusRegistered: number; gpusAvailable: number; elapsedSeconds: number };
  lines: number;
}

export interface FollowerOptions extends ParseOptions {
  /** Called for every event, in order. */
  onEvent?: (event: SlimeLogEvent) => void;
  /** A line longer than this is cut (a runaway line must not grow memory without bound). Default 1 MiB. */
  maxLineLength?: number;
  /** Continue from an earlier follower's summary (a retried activity re-reading the log from its last offset). */
  summary?: SlimeLogSummary;
  /** ... and from the line it had begun and not ended (its `pending` text). */
  pending?: string;
}

export class SlimeLogFollower {
  private partial = '';
  private readonly decoder = new TextDecoder('utf-8');
  private readonly state: SlimeLogSummary;

  constructor(private readonly options: FollowerOptions = {}) {
    this.state = options.summary
      ? structuredClone(options.summary)
      : { evals: {}, engineFailures: 0, enginesRecovered: 0, lines: 0 };
    this.partial = options.pending ?? '';
  }

  /** The line begun and not yet ended. */
  get pending(): string {
    return this.partial;
  }

  /** Consume a chunk of output; returns the events of the lines it completed. */
  push(chunk: string | Uint8Array): SlimeLogEvent[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const pieces = (this.partial + text).split(/\r\n|\n|\r/);
    this.partial = pieces.pop() ?? '';
    const maxLength = this.options.maxLineLength ?? 1024 * 1024;
    if (this.partial.length > maxLength) this.partial = this.partial.slice(0, maxLength);
    return this.consumeLines(pieces);
  }

  /** The output ended: the last line may lack its newline. */
  end(): SlimeLogEvent[] {
    const rest = this.partial + this.decoder.decode();
    this.partial = '';
    return rest === '' ? [] : this.consumeLines([rest]);
  }

  get summary(): SlimeLogSummary {
    return structuredClone(this.state);
  }

  private consumeLines(lines: string[]): SlimeLogEvent[] {
    const events: SlimeLogEvent[] = [];
    for (const line of lines) {
      if (line === '') continue;
      this.state.lines += 1;
      const event = parseSlimeLogLine(line, this.options);
      if (!event) continue;
      this.apply(event);
      events.push(event);
      this.options.onEvent?.(event);
    }
    return events;
  }

  private apply(event: SlimeLogEvent): void {
    const state = this.state;
    switch (event.type) {
      case 'rollout-done':
      case 'rollout-stats':
      case 'train-perf':
        state.firstRollout ??= event.rollout;
        state.lastRollout = event.rollout;
        delete state.waitingForGpus;
        break;
      case 'train-step':
        state.lastTrainStep = event.step;
        break;
      case 'checkpoint-saving':
        state.checkpointInProgress = { iteration: event.iteration, dir: event.dir };
        break;
      case 'checkpoint-saved':
        state.lastCheckpointSaved = { iteration: event.iteration, dir: event.dir };
        if (state.checkpointInProgress?.iteration === event.iteration) delete state.checkpointInProgress;
        break;
      case 'checkpoint-loaded':
        state.lastCheckpointLoaded = { iteration: event.iteration, dir: event.dir };
        break;
      case 'eval': {
        const record: EvalRecord = { metrics: event.metrics };
        if (event.score !== undefined) record.score = event.score;
        if (event.scoreKey !== undefined) record.scoreKey = event.scoreKey;
        state.evals[event.rollout] = record;
        break;
      }
      case 'engine-unhealthy':
        state.engineFailures += 1;
        break;
      case 'engines-recovered':
        state.enginesRecovered += event.count;
        break;
      case 'placement-group-waiting':
        state.waitingForGpus = {
          gpusNeeded: event.gpusNeeded,
          gpusRegistered: event.gpusRegistered,
          gpusAvailable: event.gpusAvailable,
          elapsedSeconds: event.elapsedSeconds,
        };
        break;
      case 'error':
        state.lastError = { errorType: event.errorType, message: event.message, line: event.line };
        break;
    }
  }
}
