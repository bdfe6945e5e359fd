"""GRPO trainer for the tiny DeepSeek-V3-shaped model: a CPU stand-in for slime's ``train.py`` (this is not slime).

It runs as a Ray job with slime's argument names and speaks slime's contract, so keel's supervision, checkpoint,
eval and resume logic can be tested without GPUs:

    ray job submit --address http://127.0.0.1:8265 -- python3 train.py "${MODEL_ARGS[@]}" \\
        --actor-num-nodes 2 --actor-num-gpus-per-node 1 --colocate \\
        --hf-checkpoint HF_DIR --ref-load TORCH_DIST_DIR --load SAVE --save SAVE --save-interval 20 ... \\
        --prompt-data train.jsonl --input-key prompt --label-key label --num-rollout 100 ... \\
        --eval-interval 20 --eval-prompt-data aime eval.jsonl --n-samples-per-eval-prompt 4

Behaviour (see docs/slime.md):
- a placement group of ``actor_num_nodes x actor_num_gpus_per_node`` GPU bundles (PACK); while it cannot be placed,
  ``Waiting for placement group of {n} GPUs (elapsed {s}s): {t} GPUs registered with Ray, {a} available.`` is printed
  every ``TINY_PG_WAIT_LOG_S`` seconds (default 5; slime: 30) and the wait never ends;
- one training rank (Ray actor) per bundle, joined in a gloo group: every rank samples part of every rollout and
  eval and computes part of every gradient (see tiny_grpo.py);
- start: ``--load`` with a tracker -> iteration ``tracker`` (weights + optimizer) and the dataset state, start at
  ``tracker + 1`` (a missing dataset state silently restarts the data); otherwise start at 0 from ``--ref-load``;
- ``for rollout_id in range(start, num_rollout)``: eval before training at rollout 0 (as slime does, unless
  ``--skip-eval-before-train``), dynamic sampling, GRPO update, save when ``(rollout_id + 1) % save_interval == 0``
  or at the last rollout, eval when ``(rollout_id + 1) % eval_interval == 0``.
Unknown flags are ignored, as slime's train.py ignores them (it parses with ``ignore_unknown_args=True``, Megatron
with ``parse_known_args``): keel, not the trainer, must catch a misspelt flag. Bad values of known flags: argparse
error, exit 2. A model flag that contradicts the checkpoint: exit 1.
Environment knobs: ``TINY_ROLLOUT_SLEEP_S`` (stretch every rollout), ``TINY_SAVE_SLEEP_S`` (stretch every save),
``TINY_SAVE_FILES`` (that many more files in every checkpoint, so that deleting one takes real time),
``TINY_STARTUP_SLEEP_S`` (a slow start-up: after loading the checkpoint and building the ranks, wait that many seconds
before the first rollout, or before the eval at rollout 0), ``TINY_CRASH_IF_EXISTS`` (fault injection: while that
file exists, the job crashes before its first rollout), ``TINY_EVAL_SLEEP_S`` (stretch every eval),
``TINY_ASYNC_SAVE_BLOCK_S`` (with ``--async-save``: a save blocks training that long, the staging; the rest of
``TINY_SAVE_SLEEP_S`` goes on in the background and the next save, or the end, waits for it, as Megatron's async save
does), ``TINY_ENGINE_FAIL_IF_EXISTS`` (fault injection: when that file exists at the start of a rollout, it is removed
and a rollout engine dies; with ``--use-fault-tolerance`` the engine is restarted inside the job, logged as slime's
health monitor and rollout manager log it, after ``TINY_ENGINE_RESTART_S``; without it the job fails).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import slime_contract as sc  # noqa: E402

DYNAMIC_FILTERS = ('check_reward_nonzero_std',)
EOS = 2  # toy_task.EOS


# --- arguments -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = sc.new_parser('train.py', 'GRPO trainer, tiny CPU stand-in for slime (Ray job)')
    sc.add_model_args(p)
    sc.add_parallel_args(p)
    flag = sc._flag

    g = p.add_argument_group('cluster')
    g.add_argument('--actor-num-nodes', type=int, default=1)
    g.add_argument('--actor-num-gpus-per-node', type=int, default=8)
    flag(g, '--colocate')
    g.add_argument('--rollout-num-gpus', type=int)
    g.add_argument('--seed', type=int, default=1234)

    g = p.add_argument_group('checkpoint (CKPT_ARGS)')
    g.add_argument('--hf-checkpoint')
    g.add_argument('--ref-load')
    g.add_argument('--load')
    g.add_argument('--save')
    g.add_argument('--save-interval', type=int)
    for name in ('--no-load-optim', '--no-load-rng', '--finetune', '--no-save-optim', '--no-save-rng'):
        flag(g, name)
    g.add_argument('--ckpt-format', choices=['torch_dist'], default='torch_dist')
    flag(g, '--async-save')

    g = p.add_argument_group('performance (PERF_ARGS)')
    g.add_argument('--recompute-granularity', choices=['full', 'selective'])
    g.add_argument('--recompute-method', choices=['uniform', 'block'])
    g.add_argument('--recompute-num-layers', type=int)
    flag(g, '--use-dynamic-batch-size')
    g.add_argument('--max-tokens-per-gpu', type=int)
    g.add_argument('--micro-batch-size', type=int, default=1)

    g = p.add_argument_group('GRPO (GRPO_ARGS)')
    g.add_argument('--advantage-estimator', choices=['grpo', 'gspo', 'reinforce_plus_plus', 'reinforce_plus_plus_baseline', 'ppo'], default='grpo')
    flag(g, '--use-kl-loss')
    g.add_argument('--kl-loss-coef', type=float, default=0.0)
    g.add_argument('--kl-loss-type', choices=['kl', 'k1', 'k2', 'k3', 'low_var_kl'], default='kl')
    g.add_argument('--entropy-coef', type=float, default=0.0)
    g.add_argument('--eps-clip', type=float, default=0.2)
    g.add_argument('--eps-clip-high', type=float)
    flag(g, '--disable-grpo-std-normalization')
    g.add_argument('--num-steps-per-rollout', type=int)

    g = p.add_argument_group('optimizer (OPTIMIZER_ARGS)')
    g.add_argument('--optimizer', choices=['adam', 'sgd'], default='adam')
    g.add_argument('--lr', type=float, default=1e-6)
    g.add_argument('--min-lr', type=float, default=0.0)
    g.add_argument('--lr-decay-style', choices=['constant', 'linear', 'cosine'], default='constant')
    g.add_argument('--lr-decay-iters', type=int)
    g.add_argument('--lr-warmup-iters', type=int, default=0)
    g.add_argument('--weight-decay', type=float, default=0.01)
    g.add_argument('--adam-beta1', type=float, default=0.9)
    g.add_argument('--adam-beta2', type=float, default=0.999)
    g.add_argument('--adam-eps', type=float, default=1e-8)
    g.add_argument('--clip-grad', type=float, default=1.0)
    for name in ('--optimizer-cpu-offload', '--overlap-cpu-optimizer-d2h-h2d', '--use-precision-aware-optimizer'):
        flag(g, name)

    g = p.add_argument_group('SGLang (SGLANG_ARGS; recorded, no engine on CPU)')
    g.add_argument('--rollout-num-gpus-per-engine', type=int, default=1)
    g.add_argument('--sglang-mem-fraction-static', type=float)
    g.add_argument('--sglang-ep-size', type=int)
    g.add_argument('--sglang-dp-size', type=int)
    g.add_argument('--sglang-moe-dense-tp-size', type=int)
    g.add_argument('--sglang-moe-a2a-backend', choices=['none', 'deepep', 'mooncake'])
    g.add_argument('--sglang-deepep-mode', choices=['normal', 'low_latency', 'auto'])
    g.add_argument('--sglang-server-concurrency', type=int)
    for name in ('--sglang-enable-dp-attention', '--sglang-enable-dp-lm-head', '--use-fault-tolerance', '--offload'):
        flag(g, name)

    g = p.add_argument_group('misc (MISC_ARGS; recorded)')
    g.add_argument('--attention-dropout', type=float, default=0.0)
    g.add_argument('--hidden-dropout', type=float, default=0.0)
    g.add_argument('--attention-backend', choices=['flash', 'fused', 'unfused', 'local', 'auto'])
    g.add_argument('--moe-token-dispatcher-type', choices=['allgather', 'alltoall', 'flex'])
    for name in ('--accumulate-allreduce-grads-in-fp32', '--attention-softmax-in-fp32', '--moe-enable-deepep', '--use-wandb'):
        flag(g, name)

    g = p.add_argument_group('rollout (ROLLOUT_ARGS)')
    g.add_argument('--prompt-data', required=True)
    g.add_argument('--input-key', default='input')
    g.add_argument('--label-key')
    flag(g, '--apply-chat-template')
    flag(g, '--rollout-shuffle')
    g.add_argument('--rm-type')
    g.add_argument('--num-rollout', type=int, required=True)
    g.add_argument('--rollout-batch-size', type=int, required=True)
    g.add_argument('--n-samples-per-prompt', type=int, default=1)
    g.add_argument('--rollout-max-response-len', type=int, default=1024)
    g.add_argument('--rollout-temperature', type=float, default=1.0)
    g.add_argument('--rollout-top-p', type=float, default=1.0)
    g.add_argument('--global-batch-size', type=int)
    flag(g, '--balance-data')
    g.add_argument('--over-sampling-batch-size', type=int)
    g.add_argument('--dynamic-sampling-filter-path')

    g = p.add_argument_group('eval (EVAL_ARGS)')
    g.add_argument('--eval-interval', type=int)
    g.add_argument('--eval-prompt-data', nargs='+', metavar='NAME PATH')
    g.add_argument('--n-samples-per-eval-prompt', type=int, default=1)
    g.add_argument('--eval-max-response-len', type=int)
    g.add_argument('--eval-temperature', type=float)
    g.add_argument('--eval-top-p', type=float, default=1.0)
    flag(g, '--skip-eval-before-train')
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, _unknown = parser.parse_known_args(argv)  # dropped silently, like slime
    positive = ['num_layers', 'actor_num_nodes', 'actor_num_gpus_per_node', 'rollout_batch_size', 'n_samples_per_prompt',
                'rollout_max_response_len', 'over_sampling_batch_size', 'save_interval', 'eval_interval',
                'global_batch_size', 'num_steps_per_rollout', 'n_samples_per_eval_prompt', 'eval_max_response_len']
    for name in positive:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f'--{name.replace("_", "-")} must be positive, got {value}')
    if args.num_rollout < 0:
        parser.error(f'--num-rollout must not be negative, got {args.num_rollout}')
    if args.load is None and args.ref_load is None:
        parser.error('one of --load or --ref-load is required')
    if args.eval_prompt_data is not None and len(args.eval_prompt_data) % 2 != 0:
        parser.error('--eval-prompt-data takes NAME PATH pairs')
    if args.over_sampling_batch_size is not None and args.over_sampling_batch_size < args.rollout_batch_size:
        parser.error('--over-sampling-batch-size must be >= --rollout-batch-size')
    if args.dynamic_sampling_filter_path is not None and args.dynamic_sampling_filter_path.rsplit('.', 1)[-1] not in DYNAMIC_FILTERS:
        parser.error(f'unknown --dynamic-sampling-filter-path {args.dynamic_sampling_filter_path} (known: {", ".join(DYNAMIC_FILTERS)})')
    if not 0 < args.eval_top_p <= 1 or not 0 < args.rollout_top_p <= 1:
        parser.error('--rollout-top-p and --eval-top-p must be in (0, 1]')
    if not 0 <= args.eps_clip < 1:
        parser.error(f'--eps-clip must be in [0, 1), got {args.eps_clip}')
    if args.eps_clip_high is None:
        args.eps_clip_high = args.eps_clip
    samples = args.rollout_batch_size * args.n_samples_per_prompt
    if args.num_steps_per_rollout is not None:
        args.global_batch_size = samples // args.num_steps_per_rollout
    elif args.global_batch_size is not None:
        if samples % args.global_batch_size != 0:
            parser.error(f'rollout batch of {samples} samples is not divisible by --global-batch-size {args.global_batch_size}')
        args.num_steps_per_rollout = samples // args.global_batch_size
    else:
        args.num_steps_per_rollout, args.global_batch_size = 1, samples
    if args.eval_max_response_len is None:
        args.eval_max_response_len = args.rollout_max_response_len
    if args.eval_temperature is None:
        args.eval_temperature = args.rollout_temperature
    return args


# --- data ----------------------------------------------------------------------------------------------------------


def read_prompts(path: str, input_key: str, label_key: str | None) -> list[dict[str, Any]]:
    import toy_task

    rows = toy_task.read_jsonl(Path(path))
    out = []
    for i, row in enumerate(rows):
        if input_key not in row:
            raise KeyError(f'{path}: line {i + 1} has no {input_key!r} field (--input-key)')
        out.append({'ids': [toy_task.BOS] + toy_task.encode(row[input_key]), 'label': row.get(label_key or 'label', '')})
    if not out:
        raise ValueError(f'{path} holds no prompts')
    return out


class PromptSource:
    """The global dataset with slime's state: epoch, offset in the epoch, number of prompts handed out."""

    def __init__(self, rows: list[dict[str, Any]], shuffle: bool, seed: int) -> None:
        self.rows, self.shuffle, self.seed = rows, shuffle, seed
        self.epoch_id = 0
        self.sample_offset = 0
        self.sample_index = 0
        self.order = self._order()

    def _order(self) -> list[int]:
        order = list(range(len(self.rows)))
        if self.shuffle:
            random.Random(self.seed + self.epoch_id).shuffle(order)
        return order

    def take(self, n: int) -> list[dict[str, Any]]:
        out = []
        while len(out) < n:
            if self.sample_offset >= len(self.rows):
                self.epoch_id += 1
                self.sample_offset = 0
                self.order = self._order()
            out.append(self.rows[self.order[self.sample_offset]])
            self.sample_offset += 1
            self.sample_index += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            'sample_offset': self.sample_offset,
            'epoch_id': self.epoch_id,
            'sample_index': self.sample_index,
            'metadata': {},
            'rng': {'seed': self.seed, 'shuffle': self.shuffle},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch_id = int(state['epoch_id'])
        self.sample_offset = int(state['sample_offset'])
        self.sample_index = int(state.get('sample_index', 0))
        self.order = self._order()


# --- start point ---------------------------------------------------------------------------------------------------


def resolve_start(args: argparse.Namespace) -> dict[str, Any]:
    """Where the weights come from: --load's tracker (resume) or --ref-load's release (fresh start)."""
    tracker = sc.read_tracker(args.load) if args.load else None
    if isinstance(tracker, int) and not args.finetune:
        ckpt = sc.checkpoint_dir(args.load, tracker)
        return {'dir': ckpt, 'iteration': tracker, 'optimizer': not args.no_load_optim, 'start': tracker + 1}
    source = args.load if tracker is not None else args.ref_load
    if source is None:
        raise FileNotFoundError(f'no checkpoint to start from: {args.load} has no {sc.TRACKER_FILE} and --ref-load is not set')
    ref_tracker = sc.read_tracker(source)
    if ref_tracker is None:
        raise FileNotFoundError(f'{source} has no {sc.TRACKER_FILE}: not a converted torch_dist checkpoint')
    return {'dir': sc.checkpoint_dir(source, ref_tracker), 'iteration': 0, 'optimizer': False, 'start': 0}


def reference_dir(args: argparse.Namespace) -> Path | None:
    if not args.use_kl_loss:
        return None
    if args.ref_load is None:
        raise FileNotFoundError('--use-kl-loss needs --ref-load')
    tracker = sc.read_tracker(args.ref_load)
    if tracker is None:
        raise FileNotFoundError(f'{args.ref_load} has no {sc.TRACKER_FILE}')
    return sc.checkpoint_dir(args.ref_load, tracker)


# --- Ray -----------------------------------------------------------------------------------------------------------


def create_placement_group(num_gpus: int):
    import ray
    from ray.util.placement_group import placement_group

    pg = placement_group([{'GPU': 1, 'CPU': 0} for _ in range(num_gpus)], strategy='PACK')
    ready = pg.ready()
    interval = float(os.environ.get('TINY_PG_WAIT_LOG_S', '5') or 5)
    started = time.monotonic()
    while not ray.wait([ready], timeout=interval)[0]:
        elapsed = int(time.monotonic() - started)
        total = ray.cluster_resources().get('GPU', 0)
        available = ray.available_resources().get('GPU', 0)
        sc.log(
            f'Waiting for placement group of {num_gpus} GPUs (elapsed {elapsed}s): '
            f'{total:g} GPUs registered with Ray, {available:g} available.'
        )
    return pg


def start_ranks(args: argparse.Namespace, pg, num_gpus: int, knobs: dict[str, float]) -> list[Any]:
    """One training actor per bundle, ordered like slime orders them (node IP, GPU id); gloo group joined."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from tiny_grpo import TinyTrainRayActor

    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get('PYTHONPATH', '')) if p)

    actors = [
        TinyTrainRayActor.options(
            num_cpus=0,
            num_gpus=1,
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=i),
            runtime_env={'env_vars': {'PYTHONPATH': pythonpath}},
        ).remote(vars(args), num_gpus, knobs)
        for i in range(num_gpus)
    ]
    where = ray.get([a.node_ip_and_gpu.remote() for a in actors])
    order = sorted(range(num_gpus), key=lambda i: (where[i][0], where[i][1]))
    ranks = [actors[i] for i in order]
    master_addr = where[order[0]][0]
    port = ray.get(ranks[0].free_port.remote())
    ray.get([r.init_process_group.remote(master_addr, port, rank) for rank, r in enumerate(ranks)])
    nodes = sorted({ip for ip, _ in where})
    sc.log(f'> {num_gpus} training ranks on {len(nodes)} node(s) {nodes}, gloo master {master_addr}:{port}')
    return ranks


# --- rollout and eval ----------------------------------------------------------------------------------------------


def reward_of(response: list[int], label: str) -> float:
    import toy_task

    return toy_task.reward(toy_task.decode(response), label)


def sample_groups(ranks, rows, n, max_len, temperature, top_p, seed, stretch=False):
    """Every rank samples a contiguous share of the prompts; returns one list of n responses per prompt."""
    import ray

    shares = split_evenly(rows, len(ranks))
    refs = [
        r.generate.remote([row['ids'] for row in share], n, max_len, temperature, top_p, seed * 1000 + i, stretch)
        for i, (r, share) in enumerate(zip(ranks, shares))
    ]
    return [group for part in ray.get(refs) for group in part]


def split_evenly(items: list[Any], parts: int) -> list[list[Any]]:
    base, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def derived_seed(*parts: int) -> int:
    return random.Random('-'.join(str(p) for p in parts)).randrange(2**31)


def generate_rollout(args, ranks, source: PromptSource, rollout_id: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Dynamic sampling: pull over_sampling_batch_size prompts at a time, keep groups whose reward std > 1e-6."""
    started = time.monotonic()
    pull_size = args.over_sampling_batch_size or args.rollout_batch_size
    use_filter = args.dynamic_sampling_filter_path is not None
    kept: list[dict[str, Any]] = []
    pulled = generated = 0
    lengths: list[int] = []
    truncated = 0
    reward_sum = 0.0
    pull = 0
    while len(kept) < args.rollout_batch_size:
        rows = source.take(pull_size)
        pulled += len(rows)
        groups = sample_groups(
            ranks, rows, args.n_samples_per_prompt, args.rollout_max_response_len, args.rollout_temperature,
            args.rollout_top_p, derived_seed(args.seed, rollout_id, pull), stretch=pull == 0,
        )
        pull += 1
        for row, responses in zip(rows, groups):
            rewards = [reward_of(resp, row['label']) for resp in responses]
            generated += len(responses)
            reward_sum += sum(rewards)
            lengths += [len(r) for r in responses]
            truncated += sum(1 for r in responses if not r or r[-1] != EOS)
            if use_filter and statistics.pstdev(rewards) <= 1e-6:
                continue
            if len(kept) < args.rollout_batch_size:
                kept.append({'prompt': row['ids'], 'responses': responses, 'rewards': rewards})
    perf = {
        'rollout/response_len/mean': sum(lengths) / max(1, len(lengths)),
        'rollout/response_len/max': max(lengths, default=0),
        'rollout/truncated_ratio': truncated / max(1, generated),
        'rollout/dynamic_filter/raw_reward_all': reward_sum / max(1, generated),
        'rollout/dynamic_filter/pulled_prompts': pulled,
        'rollout/dynamic_filter/kept_ratio': len(kept) / max(1, pulled),
        'perf/rollout_time': time.monotonic() - started,
    }
    return kept, perf


def grpo_samples(args, groups: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Group-normalised advantages: (r - mean) / (std + 1e-6) within each prompt's group."""
    samples, raw = [], []
    for g in groups:
        mean = statistics.fmean(g['rewards'])
        std = statistics.pstdev(g['rewards'])
        for response, reward in zip(g['responses'], g['rewards']):
            adv = reward - mean if args.disable_grpo_std_normalization else (reward - mean) / (std + 1e-6)
            samples.append({'prompt': g['prompt'], 'response': response, 'advantage': adv})
            raw.append(reward)
    stats = {
        'rollout/raw_reward': statistics.fmean(raw),
        'rollout/advantages': statistics.fmean(s['advantage'] for s in samples),
        'rollout/response_lengths': statistics.fmean(len(s['response']) for s in samples),
    }
    return samples, stats


def evaluate(args, ranks, eval_sets: list[tuple[str, list[dict[str, Any]]]], rollout_id: int) -> None:
    metrics: dict[str, float] = {}
    for k, (name, rows) in enumerate(eval_sets):
        groups = sample_groups(
            ranks, rows, args.n_samples_per_eval_prompt, args.eval_max_response_len, args.eval_temperature,
            args.eval_top_p, derived_seed(args.seed, 'eval', k),
        )
        rewards = [reward_of(resp, row['label']) for row, g in zip(rows, groups) for resp in g]
        responses = [resp for g in groups for resp in g]
        metrics[f'eval/{name}'] = statistics.fmean(rewards)
        metrics[f'eval/{name}-truncated_ratio'] = sum(1 for r in responses if not r or r[-1] != EOS) / len(responses)
        metrics[f'eval/{name}/response_len/mean'] = statistics.fmean(len(r) for r in responses)
    eval_sleep = float(os.environ.get('TINY_EVAL_SLEEP_S', '0') or 0)
    if eval_sleep > 0:
        time.sleep(eval_sleep)
    sc.log(f'eval {rollout_id}: {sc.metrics_repr(metrics)}')


# --- main loop -----------------------------------------------------------------------------------------------------


def periodic(rollout_id: int, interval: int | None, num_rollout: int | None = None) -> bool:
    if interval is not None and (rollout_id + 1) % interval == 0:
        return True
    return num_rollout is not None and rollout_id == num_rollout - 1


def record_secret(path: str | None) -> None:
    """Test hook: write the WANDB_API_KEY this process sees (slime's W&B logging reads it) to a 0600 file.

    Logs only whether the variable is set, never its value."""
    if not path:
        return
    value = os.environ.get('WANDB_API_KEY')
    print(f'tiny: WANDB_API_KEY is {"set" if value else "not set"} in the trainer', flush=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(value or '')


def engine_failure(args, flag_path: str | None, rollout_id: int) -> None:
    """Fault injection: a rollout engine dies. slime with --use-fault-tolerance finds it by its health check and
    restarts it inside the job (slime/utils/health_monitor.py, slime/ray/rollout.py log these lines); without it the
    rollout fails and so does the job."""
    if not flag_path or not os.path.exists(flag_path):
        return
    os.remove(flag_path)
    if not args.use_fault_tolerance:
        raise RuntimeError(f'rollout {rollout_id}: rollout engine 0 died (injected) and --use-fault-tolerance is off')
    sc.log(
        'Health check failed for rollout engine 0 (ray timeout or error). Killing actor. '
        'Exception: injected engine failure'
    )
    time.sleep(float(os.environ.get('TINY_ENGINE_RESTART_S', '0') or 0))
    sc.log('Recovered 1 dead rollout engines (worker_type=regular)')


def background_save(rank0, save_dir: str, rollout_id: int, seconds: float) -> threading.Thread:
    """The part of an async save after staging: written in the background, then the checkpoint is complete."""
    import ray

    def finish() -> None:
        time.sleep(max(0.0, seconds))
        ray.get(rank0.finalize_save.remote(save_dir, rollout_id))

    thread = threading.Thread(target=finish, name=f'async-save-{rollout_id}', daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    start = resolve_start(args)
    common = sc.read_common(start['dir'])
    sc.check_torch_dist(start['dir'])
    try:
        import tiny_model

        sc.check_model_args(args, tiny_model.TinyConfig.from_json(common['hf_config']), str(start['dir']))
    except sc.ConfigMismatch as err:
        sc.exit_on_config_mismatch(err)
    ref_dir = reference_dir(args)
    source = PromptSource(read_prompts(args.prompt_data, args.input_key, args.label_key), args.rollout_shuffle, args.seed)
    eval_sets = []
    if args.eval_prompt_data:
        pairs = args.eval_prompt_data
        eval_sets = [(pairs[i], read_prompts(pairs[i + 1], args.input_key, args.label_key)) for i in range(0, len(pairs), 2)]
    if start['start'] > 0:
        state_path = sc.dataset_state_path(args.load, start['iteration'])
        if state_path.exists():
            source.load_state_dict(torch.load(state_path, weights_only=False))

    import ray

    ray.init()
    num_gpus = args.actor_num_nodes * args.actor_num_gpus_per_node
    knobs = {
        'rollout_sleep_s': float(os.environ.get('TINY_ROLLOUT_SLEEP_S', '0') or 0),
        'save_sleep_s': float(os.environ.get('TINY_SAVE_SLEEP_S', '0') or 0),
        'save_files': float(os.environ.get('TINY_SAVE_FILES', '0') or 0),
    }
    pg = create_placement_group(num_gpus)
    ranks = start_ranks(args, pg, num_gpus, knobs)
    ray.get(
        [
            r.build.remote(common['hf_config'], str(start['dir']), start['iteration'], start['optimizer'], str(ref_dir) if ref_dir else None)
            for r in ranks
        ]
    )

    record_secret(os.environ.get('TINY_RECORD_SECRET_TO'))
    startup_sleep = float(os.environ.get('TINY_STARTUP_SLEEP_S', '0') or 0)
    if startup_sleep > 0:  # a slow start-up (R1 at scale loads for longer than a rollout takes): log nothing meanwhile
        sc.log(f'TINY_STARTUP_SLEEP_S: waiting {startup_sleep:g}s before the first rollout')
        time.sleep(startup_sleep)

    crash_flag = os.environ.get('TINY_CRASH_IF_EXISTS')
    if crash_flag and os.path.exists(crash_flag):
        raise RuntimeError(f'injected crash: {crash_flag} exists')

    async_block = float(os.environ.get('TINY_ASYNC_SAVE_BLOCK_S', '0') or 0)
    pending_save: threading.Thread | None = None
    for rollout_id in range(start['start'], args.num_rollout):
        if eval_sets and args.eval_interval is not None and rollout_id == 0 and not args.skip_eval_before_train:
            evaluate(args, ranks, eval_sets, rollout_id)
        engine_failure(args, os.environ.get('TINY_ENGINE_FAIL_IF_EXISTS'), rollout_id)
        groups, perf = generate_rollout(args, ranks, source, rollout_id)
        sc.log(f'perf {rollout_id}: {sc.metrics_repr(perf)}')
        samples, rollout_stats = grpo_samples(args, groups)
        shares = split_evenly(samples, len(ranks))
        ray.get([r.train.remote(rollout_id, share, args.num_steps_per_rollout, rollout_stats) for r, share in zip(ranks, shares)])
        if args.save is not None and periodic(rollout_id, args.save_interval, args.num_rollout):
            if pending_save is not None:  # the next save waits for the one still being written
                pending_save.join()
            state_path = sc.dataset_state_path(args.save, rollout_id)
            if args.async_save:
                ray.get([r.save.remote(args.save, rollout_id, async_block) for r in ranks])
                pending_save = background_save(ranks[0], args.save, rollout_id, knobs['save_sleep_s'] - async_block)
            else:
                ray.get([r.save.remote(args.save, rollout_id) for r in ranks])
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(source.state_dict(), state_path)
        if eval_sets and periodic(rollout_id, args.eval_interval):
            evaluate(args, ranks, eval_sets, rollout_id)
    if pending_save is not None:
        pending_save.join()
    sc.log(f'> training finished at rollout {args.num_rollout - 1}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
