// The human form of a plan: a few aligned sections, then the findings with their fixes.
import { fmtBytes, type Plan } from '../plan/index.js';
import { fmtHours, fmtSeconds } from '../plan/reliability.js';

function rows(pairs: [string, string | number | undefined][]): string[] {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.filter(([, v]) => v !== undefined).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
}

export function formatPlan(p: Plan): string {
  const l = p.layout;
  const c = p.conversion;
  const out: string[] = [`plan for ${p.name}${p.preset ? ` (preset ${p.preset})` : ''}`, ''];
  out.push('training layout');
  out.push(
    ...rows([
      ['world size', l.worldSize],
      ['TP x PP x CP x DP', `${l.tp} x ${l.pp} x ${l.cp} x ${l.dp}`],
      ['EP x ETP (per stage)', `${l.ep} x ${l.etp} over ${l.ranksPerStage} ranks, expert DP ${l.expertDp}`],
      ['experts per rank', l.expertsPerRank || undefined],
      ['layers per stage', l.stageLayers.join(', ')],
    ]),
  );
  out.push('', 'conversion (torch_dist)');
  out.push(
    ...rows([
      ['gang', `${c.nodes} nodes x ${c.nprocPerNode} ranks = ${c.worldSize}`],
      ['TP x PP x DP', `${c.tp} x ${c.pp} x ${c.dp}`],
      ['EP x ETP', `${c.ep} x ${c.etp}`],
      ['layers per stage', c.stageLayers.join(', ')],
    ]),
  );
  out.push('', 'rollout');
  out.push(
    ...rows([
      ['GPUs', p.rollout.gpus],
      ['engines', `${p.rollout.engines} x ${p.rollout.gpusPerEngine} GPUs (${p.rollout.nodesPerEngine} node(s) each)`],
      ['SGLang DP', p.rollout.sglangDpSize],
      ['concurrency per DP rank', p.rollout.concurrencyPerDpRank],
    ]),
  );
  out.push('', 'batches and tokens');
  out.push(
    ...rows([
      ['samples per rollout', p.batch.samplesPerRollout],
      ['global batch', `${p.batch.globalBatch} (${p.batch.stepsPerRollout} step(s) per rollout)`],
      ['over-sampling batch', p.batch.overSamplingBatch],
      ['longest sample', `${p.tokens.perSampleMax} tokens`],
      ['token budget per CP group', p.tokens.budgetPerCpGroup],
    ]),
  );
  out.push('', 'memory and storage (estimates)');
  out.push(
    ...rows([
      [
        'GPU per GPU (weights+grads)',
        `${fmtBytes(p.memory.gpuBytesPerGpu)} of ${fmtBytes(p.memory.gpuBytesAvailable)}`,
      ],
      [
        'rollout engine per GPU (weights)',
        `${fmtBytes(p.engineMemory.weightBytesPerGpu)} of a ${fmtBytes(p.engineMemory.staticPoolBytesPerGpu)} static pool`,
      ],
      ['host per node (CPU Adam)', p.memory.hostBytesPerNode ? fmtBytes(p.memory.hostBytesPerNode) : undefined],
      [
        'download / BF16 / torch_dist',
        `${fmtBytes(p.storage.downloadBytes)} / ${fmtBytes(p.storage.bf16Bytes)} / ${fmtBytes(p.storage.torchDistBytes)}`,
      ],
      [
        'checkpoint',
        `${fmtBytes(p.storage.checkpointBytes)} x ${p.storage.checkpointsKept} kept of ${p.storage.checkpointsTotal}`,
      ],
      ['total', fmtBytes(p.storage.totalBytes)],
    ]),
  );
  out.push('', 'schedule');
  out.push(
    ...rows([
      [
        'checkpoints',
        `${p.schedule.checkpoints} (first at rollout ${p.schedule.firstCheckpoint}, last at ${p.schedule.lastCheckpoint})`,
      ],
      ['evals', p.schedule.evals],
    ]),
  );
  out.push('', 'reliability (expected; the model: docs/reliability.md)');
  out.push(...rows(reliabilityRows(p.reliability)));
  out.push('', `train.py flags: ${p.flagsCheckedAgainst ? `checked against ${p.flagsCheckedAgainst}` : 'not checked'}`);
  out.push('', p.findings.length ? 'findings' : 'findings: none');
  for (const f of p.findings) {
    out.push(`  ${f.severity.toUpperCase().padEnd(7)} ${f.path}: ${f.message}`);
    if (f.fix) out.push(`          fix: ${f.fix}`);
  }
  out.push(
    '',
    p.ok
      ? 'no errors'
      : `${p.findings.filter((f) => f.severity === 'error').length} error(s): fix them before starting`,
  );
  return out.join('\n');
}

function reliabilityRows(r: Plan['reliability']): [string, string | number | undefined][] {
  const ettr = (value: number | undefined) => (value === undefined ? undefined : value.toFixed(3));
  return [
    [
      'failure rate',
      `${fmtNumber(r.failuresPerGpuHour)} per GPU-hour${r.rateIsDefault ? " (Llama 3's: 419 in 54 days on 16,384 GPUs)" : ''}`,
    ],
    ['failures per day', `${fmtNumber(r.failuresPerDay)} on ${r.gpus} GPUs; MTBF ${fmtHours(r.mtbfHours)}`],
    [
      'save / restart / rollout',
      r.rolloutSeconds === undefined
        ? `not given (${r.missing.join(', ')}): no ETTR estimate`
        : `${fmtSeconds(r.checkpointSaveSeconds!)} / ${fmtSeconds(r.restartSeconds!)} / ${fmtSeconds(r.rolloutSeconds)}`,
    ],
    [
      'ETTR at the save interval',
      r.expectedEttr === undefined ? undefined : `${ettr(r.expectedEttr)} (every ${r.configuredSaveInterval} rollouts)`,
    ],
    [
      'best save interval',
      r.optimalSaveInterval === undefined
        ? undefined
        : `${r.optimalSaveInterval} rollouts${r.optimalIsRunLength ? ' (the whole run)' : ''}: ETTR ${ettr(r.optimalEttr)} (Young: sqrt(2 x save x MTBF) = ${fmtHours(r.youngIntervalHours!)})`,
    ],
    ...(r.levers ?? []).map((l): [string, string] => [
      `what if: ${l.name}`,
      `ETTR ${ettr(l.expectedEttr)} (every ${r.configuredSaveInterval}); best ${l.optimalSaveInterval} rollouts: ${ettr(l.optimalEttr)}`,
    ]),
    [
      'expected over the run',
      r.expectedWallHours === undefined
        ? undefined
        : `${fmtHours(r.expectedWallHours)} of wall time, ${fmtNumber(r.expectedFailures!)} failures`,
    ],
  ];
}

/** 3 significant digits; small numbers as 1.97e-5 */
function fmtNumber(value: number): string {
  return value !== 0 && Math.abs(value) < 0.001 ? value.toExponential(2) : String(+value.toPrecision(3));
}
