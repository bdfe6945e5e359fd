// Step activities: a check per kind (are the outputs already complete?) and a run per kind. Each takes one input
// object: the spec, the step id, the run key (workflow id) and the attempt.
import { assertEnvNameAllowed } from './env-allowlist.js';
import { ApplicationFailure, log } from '@temporalio/activity';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { GangMember } from '../src/exec/index.js';
import { checkTorchDistRelease, readTracker } from '../src/progress/checkpoints.js';
import {
  castCommand,
  convertCommands,
  downloadCommand,
  downloadTarget,
  withModelArgs,
  type DownloadTarget,
} from '../src/recipe/commands.js';
import type { Spec } from '../src/spec/schema.js';
import { modelPaths } from '../src/spec/paths.js';
import {
  compareWithListing,
  endpointProblem,
  listRepoFiles,
  readManifest,
  writeManifest,
  type RepoListing,
} from '../src/hub/index.js';
import { castFp8Checkpoint, checkFp8CastComplete } from './fp8-engine.js';
import { registerSecretValue } from '../src/log.js';
import {
  activitySignal,
  envFromWorker,
  executorFor,
  findNode,
  heartbeat,
  localSpec,
  target,
  withHeartbeats,
  type ActivityDeps,
} from './context.js';
import { durationMs } from '../src/spec/duration.js';
import { programFailed, runGangToEnd, runToEnd } from './process.js';
import { clearFailedConversion } from './convert-cleanup.js';
import { failureTypes } from '../src/failure-types.js';

export interface StepInput {
  spec: Spec;
  stepId: string;
  runKey: string;
  attempt: number;
  /** when the step started (ISO) */
  since?: string;
}

export interface CheckResult {
  complete: boolean;
  reason: string;
  /** false: this kind has no output check (it always runs; a successful run is its proof) */
  checkable?: boolean;
  outputs?: Record<string, unknown>;
}

export function stepActivities(deps: ActivityDeps) {
  const hubToken = (spec: Spec): string | undefined => {
    if (spec.model.hfTokenEnv) assertEnvNameAllowed('model.hfTokenEnv', spec.model.hfTokenEnv, deps.allowEnv);
    const token = spec.model.hfTokenEnv ? deps.env[spec.model.hfTokenEnv] : undefined;
    registerSecretValue(token);
    return token;
  };
  /** The Hub endpoint; a spec that names an endpoint env var never falls back to the public Hub. */
  const hubEndpoint = (spec: Spec): string | undefined => {
    if (!spec.model.hfEndpointEnv) {
      const fromWorker = deps.env.HF_ENDPOINT;
      const problem = fromWorker === undefined ? undefined : endpointProblem(fromWorker);
      if (problem)
        throw ApplicationFailure.nonRetryable(
          `the worker's HF_ENDPOINT ${problem} (the value is not shown): set it to the Hub's base URL or unset it`,
          failureTypes.configError,
        );
      return fromWorker;
    }
    assertEnvNameAllowed('model.hfEndpointEnv', spec.model.hfEndpointEnv, deps.allowEnv);
    const endpoint = deps.env[spec.model.hfEndpointEnv];
    if (!endpoint) {
      throw ApplicationFailure.nonRetryable(
        `model.hfEndpointEnv names ${spec.model.hfEndpointEnv}, which is not set in the worker's environment (for tiny-local: start the local cluster with keel demo or keel local up)`,
        failureTypes.configError,
      );
    }
    // Its value is never echoed: a spec that names the wrong variable must not copy a secret into history.
    registerSecretValue(endpoint);
    const problem = endpointProblem(endpoint);
    if (problem) {
      throw ApplicationFailure.nonRetryable(
        `model.hfEndpointEnv names ${spec.model.hfEndpointEnv}, whose value ${problem} (the value is not shown): set it to the Hub's base URL, e.g. https://huggingface.co`,
        failureTypes.configError,
      );
    }
    return endpoint;
  };

  async function hubListing(spec: Spec, target: DownloadTarget): Promise<{ listing: RepoListing; source: string }> {
    const endpoint = hubEndpoint(spec);
    const dir = target.localDir;
    try {
      const listing = await listRepoFiles({
        endpoint,
        repo: target.repo,
        revision: target.revision,
        repoType: target.repoType,
        token: hubToken(spec),
      });
      const wanted = target.files;
      if (wanted) {
        const missing = wanted.filter((f) => !listing.files.some((x) => x.path === f));
        if (missing.length) {
          throw ApplicationFailure.nonRetryable(
            `${target.repo}@${target.revision} has no file ${missing.join(', ')} (the step's files)`,
            failureTypes.configError,
          );
        }
        listing.files = listing.files.filter((f) => wanted.includes(f.path));
      }
      return { listing, source: 'the Hub' };
    } catch (error) {
      if (error instanceof ApplicationFailure) throw error;
      const manifest = await readManifest(dir);
      if (!manifest) throw error;
      return { listing: manifest, source: 'the manifest of the last download (the Hub is unreachable)' };
    }
  }

  async function checkStep({ spec: raw, stepId }: { spec: Spec; stepId: string }): Promise<CheckResult> {
    // sha256 over a downloaded model reads every byte of it: heartbeat while the check works
    const spec = localSpec(raw, deps);
    return withHeartbeats(durationMs(spec.policies.heartbeatTimeout) / 3, `checking ${stepId}`, () =>
      checkWithDependents(spec, stepId, new Map()),
    );
  }

  /**
   * A step with no outputs of its own to check (probe, ray-cluster) is not needed when every step after it is
   * complete: a finished run started again skips everything, and brings up no cluster to train nothing.
   */
  async function checkWithDependents(
    spec: Spec,
    stepId: string,
    seen: Map<string, Promise<CheckResult>>,
  ): Promise<CheckResult> {
    let result = seen.get(stepId);
    if (result) return result;
    result = (async () => {
      const own = await checkOwnOutputs(spec, stepId);
      const kind = spec.steps[stepId]?.kind;
      if (own.complete || (kind !== 'probe' && kind !== 'ray-cluster')) return own;
      const after = Object.entries(spec.steps)
        .filter(([, step]) => step.needs.includes(stepId))
        .map(([id]) => id);
      if (after.length === 0) return own;
      const checks = await Promise.all(after.map((id) => checkWithDependents(spec, id, seen)));
      if (!checks.every((c) => c.complete)) return own;
      return { complete: true, reason: `not needed: every step after it is complete (${after.join(', ')})` };
    })();
    seen.set(stepId, result);
    return result;
  }

  async function checkOwnOutputs(spec: Spec, stepId: string): Promise<CheckResult> {
    const step = Object.hasOwn(spec.steps, stepId) ? spec.steps[stepId] : undefined;
    if (!step) throw ApplicationFailure.nonRetryable(`no step ${stepId}`, failureTypes.invalidSpec);
    const paths = modelPaths(spec);
    switch (step.kind) {
      case 'hf-download': {
        const target = downloadTarget(spec, stepId);
        let found: { listing: RepoListing; source: string };
        try {
          found = await hubListing(spec, target);
        } catch (error) {
          if (error instanceof ApplicationFailure) throw error;
          return { complete: false, reason: `cannot list the repo: ${(error as Error).message}` };
        }
        const problems = await compareWithListing(target.localDir, found.listing, step.verifySha256);
        if (problems.length) return { complete: false, reason: problems.slice(0, 5).join('; ') };
        return {
          complete: true,
          reason: `all ${found.listing.files.length} files of ${target.repoType === 'dataset' ? 'dataset ' : ''}${target.repo}@${target.revision} present with the sizes${step.verifySha256 ? ' and sha256' : ''} listed by ${found.source}`,
          outputs: { files: found.listing.files.length },
        };
      }
      case 'fp8-cast': {
        const check = await checkFp8CastComplete(paths.download, paths.bf16);
        return check.complete
          ? {
              complete: true,
              reason: `index written last, every shard present, no _scale_inv tensor left in ${paths.bf16}`,
            }
          : { complete: false, reason: check.reason ?? 'incomplete' };
      }
      case 'torch-dist-convert': {
        const check = await checkTorchDistRelease(paths.torchDist);
        return check.complete
          ? {
              complete: true,
              reason: `tracker reads release, release/ holds .metadata, shards and metadata.json in ${paths.torchDist}`,
            }
          : { complete: false, reason: check.problems.join('; ') };
      }
      case 'command':
      case 'gang': {
        if (!step.creates)
          return { complete: false, checkable: false, reason: 'no `creates` file to check: always runs' };
        const file = step.creates.startsWith('/') ? step.creates : join(spec.storage.baseDir, step.creates);
        try {
          const s = await stat(file);
          return s.size > 0
            ? { complete: true, reason: `${file} exists` }
            : { complete: false, reason: `${file} is empty` };
        } catch {
          return { complete: false, reason: `${file} does not exist` };
        }
      }
      case 'probe':
        return { complete: false, checkable: false, reason: 'probes always run' };
      case 'ray-cluster':
        // decides for itself inside its run (a healthy cluster of the right nodes is kept)
        return { complete: false, checkable: false, reason: 'checked when it runs' };
      case 'train':
        return await checkTraining(spec);
    }
  }

  async function downloadModel(input: StepInput): Promise<Record<string, unknown>> {
    const spec = localSpec(input.spec, deps);
    const command = downloadCommand(spec, input.stepId);
    const node = target(findNode(spec, command.node));
    const wanted = downloadTarget(spec, input.stepId);
    const env = envFromWorker(command.envFromWorker, deps.env);
    hubEndpoint(spec); // fails at once when the named endpoint is missing
    const { HF_TOKEN: token, HF_ENDPOINT: endpoint, ...plainEnv } = env;
    // The token and the endpoint travel like secrets (stdin into the node's 0600 file), never in argv or a record.
    const secretEnv: Record<string, string> = {};
    if (token !== undefined && spec.model.hfTokenEnv) {
      registerSecretValue(token);
      secretEnv.HF_TOKEN = spec.model.hfTokenEnv;
    }
    if (endpoint !== undefined && spec.model.hfEndpointEnv) secretEnv.HF_ENDPOINT = spec.model.hfEndpointEnv;
    else if (!spec.model.hfEndpointEnv && deps.env.HF_ENDPOINT) secretEnv.HF_ENDPOINT = 'HF_ENDPOINT';
    const result = await runToEnd({
      executor: executorFor(spec),
      node,
      since: input.since,
      launch: {
        id: `${input.runKey}/${input.stepId}`,
        argv: command.argv,
        env: { ...spec.cluster.env, HF_HUB_DISABLE_TELEMETRY: '1', HF_HUB_DISABLE_PROGRESS_BARS: '1', ...plainEnv },
        secretEnv,
      },
      progress: async () => ({ bytesDone: await directoryBytes(wanted.localDir) }),
      pollMs: 2000,
    });
    if (result.exitCode !== 0) throw programFailed('hf download', result);
    try {
      const { listing } = await hubListing(spec, wanted);
      await writeManifest(wanted.localDir, listing);
    } catch (error) {
      log.warn('could not record the download manifest', { error: (error as Error).message });
    }
    return { bytes: await directoryBytes(wanted.localDir), reattached: result.reattached };
  }

  async function castWeights(input: StepInput): Promise<Record<string, unknown>> {
    const spec = localSpec(input.spec, deps);
    const step = spec.steps[input.stepId];
    const paths = modelPaths(spec);
    if (step?.kind === 'fp8-cast' && step.engine === 'native') {
      const result = await castFp8Checkpoint({
        inputDir: paths.download,
        outputDir: paths.bf16,
        threads: step.threads,
        directIo: step.directIo,
        likeSlime: step.likeSlime,
        signal: activitySignal(),
        // Finished shards are recorded in the output directory: a retried attempt skips them.
        onProgress: (p: { shardsDone: string[]; shardsTotal: number; bytesDone: number }) =>
          heartbeat({
            shardsDone: p.shardsDone.length,
            shardsTotal: p.shardsTotal,
            bytesDone: p.bytesDone,
            lastShard: p.shardsDone.at(-1),
          }),
        onWarning: (message: string) => log.warn('fp8 cast', { warning: message }),
      });
      return {
        engine: 'native',
        shards: result.shards,
        skippedShards: result.skippedShards.length,
        seconds: result.seconds,
        directBytes: result.directBytes,
      };
    }
    const command = castCommand(spec);
    const result = await runToEnd({
      executor: executorFor(spec),
      node: target(findNode(spec, command.node)),
      since: input.since,
      launch: {
        id: `${input.runKey}/${input.stepId}`,
        argv: command.argv,
        cwd: command.cwd,
        env: { ...spec.cluster.env, ...command.env },
      },
      progress: async () => ({ bytesDone: await directoryBytes(paths.bf16) }),
    });
    if (result.exitCode !== 0) throw programFailed('fp8_cast_bf16.py', result);
    return { engine: 'slime', reattached: result.reattached };
  }

  async function convertCheckpoint(input: StepInput): Promise<Record<string, unknown>> {
    const spec = localSpec(input.spec, deps);
    const commands = convertCommands(spec);
    const members: GangMember[] = commands.map((c) => ({
      node: target(findNode(spec, c.node)),
      argv: withModelArgs(c),
      env: { ...spec.cluster.env, ...c.env },
      cwd: c.cwd,
    }));
    const first = commands[0]!;
    const id = `${input.runKey}/${input.stepId}`;
    const torchDistDir = modelPaths(spec).torchDist;
    // A Temporal retry of this attempt (its worker shut down) whose gang finished meanwhile: the release is this
    // step's own, complete -- keep it. Otherwise the step's check found no complete release/ when it began: what is
    // there is a failed attempt's, and the tool would build on it.
    if ((await checkTorchDistRelease(torchDistDir)).complete) return { members: members.length, clearedLeftovers: [] };
    const { cleared } = await clearFailedConversion({
      executor: executorFor(spec),
      gangId: id,
      nodes: members.map((m) => m.node),
      torchDistDir,
    });
    const result = await runGangToEnd({
      executor: executorFor(spec),
      id,
      members,
      masterAddr: first.env.MASTER_ADDR!,
      masterPort: spec.conversion.masterPort,
      graceMs: 5000,
    });
    return { members: result.records.length, clearedLeftovers: cleared };
  }

  async function runCommandStep(input: StepInput): Promise<Record<string, unknown>> {
    const spec = localSpec(input.spec, deps);
    const step = spec.steps[input.stepId];
    if (step?.kind !== 'command')
      throw ApplicationFailure.nonRetryable(`step ${input.stepId} is not a command`, failureTypes.invalidSpec);
    const node = step.node ? findNode(spec, step.node) : spec.cluster.nodes[0]!;
    const result = await runToEnd({
      executor: executorFor(spec),
      node: target(node),
      since: input.since,
      launch: {
        id: `${input.runKey}/${input.stepId}`,
        argv: step.argv,
        cwd: step.cwd,
        env: { ...spec.cluster.env, ...step.env },
      },
      pollMs: 500,
    });
    if (result.exitCode !== 0) throw programFailed(step.argv[0]!, result);
    return { exitCode: 0, reattached: result.reattached, launched: result.launched };
  }

  async function runGangStep(input: StepInput): Promise<Record<string, unknown>> {
    const spec = localSpec(input.spec, deps);
    const step = spec.steps[input.stepId];
    if (step?.kind !== 'gang')
      throw ApplicationFailure.nonRetryable(`step ${input.stepId} is not a gang`, failureTypes.invalidSpec);
    const nodes = spec.cluster.nodes.slice(0, step.nodes);
    const result = await runGangToEnd({
      executor: executorFor(spec),
      id: `${input.runKey}/${input.stepId}`,
      members: nodes.map((n) => ({
        node: target(n),
        argv: step.argv,
        env: { ...spec.cluster.env, ...step.env },
        cwd: step.cwd,
      })),
      masterAddr: nodes[0]!.ip ?? nodes[0]!.host,
      masterPort: step.masterPort,
      pollMs: 500,
      graceMs: 3000,
    });
    return { members: result.records.length };
  }

  /**
   * Training is complete when the tracker names the last rollout (slime also saves at the last rollout). Otherwise it
   * runs, and resumes from the tracker; a run stopped early is not "incomplete outputs", so no check after it.
   */
  async function checkTraining(spec: Spec): Promise<CheckResult> {
    const saveDir = modelPaths(spec).save;
    const tracker = await readTracker(saveDir).catch(() => undefined);
    const last = spec.rollout.numRollout - 1;
    if (typeof tracker === 'number' && tracker >= last) {
      return {
        complete: true,
        reason: `training is complete: the tracker in ${saveDir} names rollout ${tracker}, the last of rollout.numRollout ${spec.rollout.numRollout} (raise it to train on)`,
        outputs: { lastCheckpoint: tracker, restarts: 0, stoppedEarly: false },
      };
    }
    return {
      complete: false,
      checkable: false,
      reason:
        typeof tracker === 'number'
          ? `resumes after rollout ${tracker} (last: ${last})`
          : `no checkpoint in ${saveDir}: trains from the start`,
    };
  }

  return { checkStep, downloadModel, castWeights, convertCheckpoint, runCommandStep, runGangStep };
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
