"""Where the actors run: a placement plan from the config, a preflight against the cluster, placement groups.

`build_plan` and `find_shortfalls` are pure (no Ray import), so `hgpo-train --dry-run` and the unit tests
use them without a cluster. `Placement.create` is the Ray part: it checks the plan against the cluster
before asking for anything (lessons.md, item 9), creates one placement group per role, waits for them
with a timeout, and hands each actor the options that put it into its bundle.

Learner ranks are packed (PACK: as few nodes as possible, so gradients all-reduce over the fastest
links); rollout workers are spread (SPREAD: one per node first, best effort) or packed, as
`rollout.placement` says. With trainer.placement=colocated there is one placement group, hgpo-colocated:
bundle r holds learner rank r and m = rollout.num_workers / learner.num_ranks workers, which take turns on
its GPUs (the bundle has the larger of the two roles' GPU needs, and each actor asks for its share of it, so
Ray gives them the same devices); CPUs and custom resources add up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hgpo.config import Config

log = logging.getLogger(__name__)

STRATEGIES = {"spread": "SPREAD", "pack": "PACK"}
EPS = 1e-9  # resource amounts are floats; Ray itself counts in units of 1e-4


@dataclass(frozen=True)
class RolePlan:
    """`count` actors of one role, each needing `resources` on a single node (one bundle each)."""

    role: str
    """learner or rollout; the placement group is named hgpo-<role>."""
    count: int
    resources: dict[str, float]
    """Per actor, zero amounts left out: {"CPU": 0.5, "GPU": 1.0, "rollout_slot": 1.0}."""
    strategy: str
    """Ray placement-group strategy: PACK or SPREAD."""
    count_key: str
    """Config key of `count`, for error messages."""
    resource_keys: dict[str, str]
    """Config key of each resource in `resources`, for error messages."""
    gpu_fix: str = ""
    """For a role that runs on GPUs whenever the node has them: what to set when it reserves none on a cluster
    with GPUs (Ray would let it use GPUs reserved for others). Empty: the role may run without GPUs."""
    members: tuple[RolePlan, ...] = ()
    """colocated: the roles whose actors share each of this role's bundles (learner, rollout)."""

    @property
    def name(self) -> str:
        return f"hgpo-{self.role}"


def _role(
    role: str,
    count: int,
    strategy: str,
    count_key: str,
    amounts: dict[str, float],
    keys: dict[str, str],
    custom_key: str,
    gpu_fix: str = "",
) -> RolePlan:
    """RolePlan with zero amounts left out; resources without a key of their own are custom ones."""
    resources = {name: float(amount) for name, amount in amounts.items() if amount > 0}
    resource_keys = {name: keys.get(name, f"{custom_key}.{name}") for name in resources}
    return RolePlan(role, count, resources, strategy, count_key, resource_keys, gpu_fix)


def build_plan(cfg: Config) -> tuple[RolePlan, ...]:
    """The learner and rollout roles: how many actors, what each needs, how they are placed; with
    trainer.placement=colocated one role of shared bundles holding both."""
    roles = _separate_roles(cfg)
    return roles if cfg.trainer.placement == "separate" else (_colocated(*roles),)


def _colocated(learner: RolePlan, rollout: RolePlan) -> RolePlan:
    """Bundle r: learner rank r and workers r*m .. r*m+m-1, taking turns on the GPUs, adding up everything else."""
    m = rollout.count // learner.count
    resources, keys = {}, {}
    for name in sorted(set(learner.resources) | set(rollout.resources)):
        mine, theirs = learner.resources.get(name, 0.0), m * rollout.resources.get(name, 0.0)
        resources[name] = max(mine, theirs) if name == "GPU" else mine + theirs
        keys[name] = " and ".join(r.resource_keys[name] for r in (learner, rollout) if name in r.resources)
    return RolePlan(
        "colocated", learner.count, resources, "PACK", "learner.num_ranks", keys, members=(learner, rollout)
    )


def _separate_roles(cfg: Config) -> tuple[RolePlan, RolePlan]:
    learner, rollout = cfg.learner, cfg.rollout
    # With tensor parallelism the two keys move together (one GPU per vLLM worker process: config.RolloutConfig).
    rollout_gpus = "rollout.num_gpus_per_worker"
    if rollout.tensor_parallel_size > 1:
        rollout_gpus = "rollout.tensor_parallel_size and rollout.num_gpus_per_worker"
    return (
        _role(
            "learner",
            learner.num_ranks,
            "PACK",
            "learner.num_ranks",
            {"CPU": learner.num_cpus, "GPU": learner.num_gpus_per_rank, **learner.resources_per_rank},
            {"CPU": "learner.num_cpus", "GPU": "learner.num_gpus_per_rank"},
            "learner.resources_per_rank",
        ),
        _role(
            "rollout",
            rollout.num_workers,
            STRATEGIES[rollout.placement],
            "rollout.num_workers",
            {"CPU": rollout.num_cpus_per_worker, "GPU": rollout.num_gpus_per_worker, **rollout.resources_per_worker},
            {"CPU": "rollout.num_cpus_per_worker", "GPU": rollout_gpus},
            "rollout.resources_per_worker",
            f"rollout.engine=vllm runs on the GPUs of each worker's own bundle: set rollout.num_gpus_per_worker="
            f"{rollout.tensor_parallel_size} (rollout.tensor_parallel_size)"
            if rollout.engine == "vllm"
            else "",
        ),
    )


def member_request(shared: RolePlan, member: RolePlan) -> dict[str, float]:
    """What one actor of `member` asks of its colocated bundle: its own resources, with the GPUs scaled so that
    all actors of the bundle fit into the bundle's GPUs (they take turns on the same devices)."""
    request = dict(member.resources)
    if "GPU" in request:
        per_bundle = sum(m.resources.get("GPU", 0.0) * (m.count // shared.count) for m in shared.members)
        request["GPU"] = request["GPU"] * shared.resources["GPU"] / per_bundle
    return request


def format_resources(resources: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {amount:g}" for name, amount in resources.items()) + "}"


def format_plan(plan: Sequence[RolePlan]) -> str:
    """A table: one row per role (actors, per-actor resources, strategy), then the total."""
    rows = [("role", "actors", "per actor", "strategy", "placement group")]
    total: dict[str, float] = {}
    for r in plan:
        group = (r.name, r.strategy) if r.resources else ("none (needs no resources)", "-")
        rows.append((r.role, str(r.count), format_resources(r.resources), group[1], group[0]))
        for member in r.members:
            share = format_resources(member_request(r, member))
            rows.append((f"  {member.role}", str(member.count), share, "", "shares the bundles above"))
        for name, amount in r.resources.items():
            total[name] = total.get(name, 0.0) + r.count * amount
    rows.append(("total", "", format_resources(total), "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def find_shortfalls(
    plan: Sequence[RolePlan], cluster: Mapping[str, float], nodes: Mapping[str, Mapping[str, float]]
) -> list[str]:
    """What the cluster lacks for `plan`, one line per problem; [] when it can hold the plan.

    `cluster` holds the total of each resource (ray.cluster_resources()), `nodes` each alive node's
    resources by a readable label (ray.nodes()). A role that runs on GPUs but reserves none on a cluster
    with GPUs is refused first; then each role is checked alone, then the roles together, then whether one
    actor's bundle fits on some single node.
    """
    problems = [
        f"{r.role} actors reserve no GPU, but the cluster has {cluster['GPU']:g}; {r.gpu_fix}"
        for r in plan
        if r.gpu_fix and "GPU" not in r.resources and cluster.get("GPU", 0.0) > 0
    ]
    for r in plan:
        for name, amount in r.resources.items():
            need, have = r.count * amount, cluster.get(name, 0.0)
            if need > have + EPS:
                problems.append(
                    f"{r.role} needs {r.count} x {{{name}: {amount:g}}} = {need:g} {name}, cluster has {have:g} "
                    f"{name}; lower {r.count_key} or {r.resource_keys[name]}"
                )
    if problems:
        return problems
    for name in sorted({name for r in plan for name in r.resources}):
        users = [r for r in plan if name in r.resources]
        need, have = sum(r.count * r.resources[name] for r in users), cluster.get(name, 0.0)
        if len(users) > 1 and need > have + EPS:
            parts = " + ".join(f"{r.role} {r.count} x {r.resources[name]:g}" for r in users)
            keys = ", ".join(k for r in users for k in (r.count_key, r.resource_keys[name]))
            problems.append(f"together the roles need {need:g} {name} ({parts}), cluster has {have:g}; lower {keys}")
    for r in plan:
        if r.resources and not any(_fits(r.resources, node) for node in nodes.values()):
            short = [
                n
                for n, amount in r.resources.items()
                if max((v.get(n, 0.0) for v in nodes.values()), default=0) < amount
            ] or list(r.resources)  # each exists somewhere, but never all on one node
            offered = "; ".join(
                f"{label} {format_resources({n: res.get(n, 0.0) for n in r.resources})}" for label, res in nodes.items()
            )
            problems.append(
                f"one {r.role} actor needs {format_resources(r.resources)} on a single node, but no node has that "
                f"({offered}); lower {' or '.join(r.resource_keys[n] for n in short)}"
            )
    return problems


GPU_KEYS = {"learner": "learner.num_gpus_per_rank", "rollout": "rollout.num_gpus_per_worker"}
"""The key that gives each actor of a role GPUs of its own."""


def unreserved_gpu_warnings(plan: Sequence[RolePlan], cluster: Mapping[str, float]) -> list[str]:
    """One warning per role that reserves no GPU on a cluster that has some (the learner; the transformers
    generators; vLLM ones are refused by find_shortfalls). Ray (2.60 here) leaves CUDA_VISIBLE_DEVICES alone for
    an actor that reserves no GPU, so it runs on the first GPU of its node, which Ray may also give to an actor
    that reserved it; on a node without GPUs, on the CPU. Fine for the tiny model on a workstation, a mistake
    for a model given by model.path."""
    if cluster.get("GPU", 0.0) <= 0:
        return []
    return [
        f"{r.role} actors reserve no GPU but the cluster has {cluster['GPU']:g}: each of the {r.count} uses "
        f"whatever device its node shows (the first GPU, which Ray may also give to another actor, or the CPU). "
        f"Set {GPU_KEYS[r.role]}=1 to give each a GPU of its own."
        for top in plan
        for r in (top, *top.members)
        if r.role in GPU_KEYS and not r.gpu_fix and "GPU" not in r.resources
    ]


def memory_preflight(cfg: Config) -> tuple[str, list[str]]:
    """(a report: the predicted memory per learner rank and per generator, hgpo.memory; what does not fit, with
    the keys to change). GPU memory comes from trainer.gpu_memory_gb or this machine's GPUs; unknown: no check."""
    from hgpo import memory

    shape, source = memory.model_shape(cfg)
    if shape is None:
        return f"predicted memory: unknown model shape ({source}); no memory check", []
    gpu_bytes, gpu_source = memory.gpu_memory_bytes(cfg.trainer.gpu_memory_gb)
    rows = memory.estimates(cfg, shape, gpu_bytes)
    gpu = f"{gpu_bytes / memory.GB:.1f} GB per GPU from {gpu_source}" if gpu_bytes else f"GPU memory {gpu_source}"
    params = f"{shape.params / 1e9:.2f}B" if shape.params >= 1e9 else f"{shape.params / 1e6:.3g}M"
    lines = [
        f"predicted peak memory per actor, GB ({params} parameters from {source}; {gpu}):",
        memory.format_estimates(rows),
    ]
    problems = []
    for e in rows:
        if e.budget is not None and e.required > e.budget:
            if e.role == "learner rank":
                fixes = _learner_fixes(cfg, shape, e.budget)
            else:
                fixes = _generator_fixes(cfg, e, gpu_bytes)
            biggest = sorted(e.parts.items(), key=lambda kv: -kv[1])[:3]
            parts = ", ".join(f"{name} {value / memory.GB:.1f}" for name, value in biggest)
            problems.append(
                f"a {e.role} needs {e.required / memory.GB:.1f} GB ({parts}) but may use {e.budget / memory.GB:.1f} "
                f"GB of its GPU; {fixes}"
            )
        elif e.role == "rollout worker (vllm)" and e.budget is not None and e.total > e.budget:
            episodes = memory.episodes_per_worker(cfg)
            room = int((e.budget - e.total + e.parts["kv cache"]) / (e.parts["kv cache"] / episodes))
            lines.append(
                f"note: a generator's KV cache holds about {room} of its {episodes} episodes at once; vLLM queues "
                "the rest (a higher rollout.gpu_memory_utilization runs more together)"
            )
    return "\n".join(lines), problems


def _learner_fixes(cfg: Config, shape, budget: float) -> str:
    from hgpo import memory

    row = cfg.rollout.max_prompt_tokens + cfg.rollout.max_response_tokens
    remedies = memory.learner_remedies(shape, memory.learner_plan(cfg, shape), row)
    if not remedies:
        return "no learner option lowers it: use GPUs with more memory"
    listed = ", ".join(
        f"{name} (-> {total / memory.GB:.1f} GB{', fits' if total <= budget else ''})" for name, total in remedies
    )
    return f"change one or several of: {listed}"


def _generator_fixes(cfg: Config, e, gpu_bytes: float) -> str:
    rollout = cfg.rollout
    if rollout.engine == "vllm":
        fixes = [
            f"rollout.tensor_parallel_size={rollout.tensor_parallel_size * 2} (with as many GPUs in "
            "rollout.num_gpus_per_worker)",
            "a lower rollout.max_model_len or rollout.max_prompt_tokens",
        ]
        need = e.required / gpu_bytes
        if need <= 0.95:
            fixes.insert(0, f"rollout.gpu_memory_utilization={need + 0.01:.2f}")
    else:
        fixes = ["more rollout.num_workers (fewer episodes, so less KV cache, each)", "rollout.engine=vllm"]
        if rollout.num_gpus_per_worker < 1:
            fixes.insert(0, "rollout.num_gpus_per_worker=1")
    if cfg.model.dtype == "float32":
        fixes.append("model.dtype=bfloat16")
    return "change one of: " + ", ".join(fixes)


def _fits(bundle: Mapping[str, float], node: Mapping[str, float]) -> bool:
    return all(node.get(name, 0.0) + EPS >= amount for name, amount in bundle.items())


def node_ip_ref(actor) -> Any:
    """A ref to the IP of the node `actor` runs on, as Ray knows it: the address other nodes reach it at, where
    its hostname often resolves to 127.0.x.1. For rendezvous (learner process group, weight broadcast)."""
    return actor.__ray_call__.remote(_node_ip)


def _node_ip(_actor) -> str:
    import ray

    return ray.util.get_node_ip_address()


class Placement:
    """The job's placement groups (one per role that needs resources) and the actor options they give."""

    def __init__(self, plan: Sequence[RolePlan], groups: dict[str, Any]):
        self.roles = {m.role: m for r in plan for m in (r, *r.members)}
        self.shared = {m.role: r for r in plan for m in r.members}  # colocated role -> its bundles' role
        self.groups = groups

    @classmethod
    def create(cls, plan: Sequence[RolePlan], timeout_s: float) -> Placement:
        """Check `plan` against the cluster, then create its placement groups and wait for them.

        Raises RuntimeError naming what is missing when the cluster can never hold the plan (nothing is
        created), and TimeoutError naming the placement groups still pending after `timeout_s` (their
        resources exist but are taken or scattered); the groups are removed before either error.
        """
        import ray
        from ray.util.placement_group import placement_group

        nodes = {
            f"node {n['NodeID'][:8]} ({n['NodeManagerAddress']})": n["Resources"] for n in ray.nodes() if n["Alive"]
        }
        problems = find_shortfalls(plan, ray.cluster_resources(), nodes)
        if problems:
            raise RuntimeError(
                "placement: the cluster cannot hold this job, nothing was started:\n  " + "\n  ".join(problems)
            )
        for warning in unreserved_gpu_warnings(plan, ray.cluster_resources()):
            log.warning("placement: %s", warning)
        roles = [r for r in plan if r.resources]
        groups = {
            r.role: placement_group([dict(r.resources)] * r.count, strategy=r.strategy, name=r.name) for r in roles
        }
        placement = cls(plan, groups)
        ready = [placement.groups[r.role].ready() for r in roles]
        _, pending = ray.wait(ready, num_returns=len(ready), timeout=timeout_s) if ready else ([], [])
        if pending:
            placement.remove()
            stuck = [
                f"{r.name} ({r.count} x {format_resources(r.resources)}, {r.strategy})"
                for r, ref in zip(roles, ready)
                if ref in pending
            ]
            raise TimeoutError(
                f"placement: {', '.join(stuck)} not ready after {timeout_s}s (trainer.placement_timeout_s); the "
                "cluster has these resources in total, but they are held by other jobs or no node has them free; "
                "see `ray status`"
            )
        for r in roles:
            nodes_by_bundle = ray.util.placement_group_table(placement.groups[r.role])["bundles_to_node_id"]
            log.info("%s ready: bundles on nodes %s", r.name, [nodes_by_bundle[i][:8] for i in range(r.count)])
        return placement

    def options(self, role: str, index: int) -> dict[str, Any]:
        """Ray options that put actor `index` of `role` (e.g. learner rank r) into its bundle.

        GPUs, custom resources and the scheduling strategy; the caller sets num_cpus from the same
        config key the bundle was sized with (rollout.num_cpus_per_worker, learner.num_cpus).
        Colocated, the actor asks for its share of its bundle's GPUs (member_request).
        """
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        r, group, bundle, request = self.roles[role], role, index, self.roles[role].resources
        if not 0 <= index < r.count:
            raise IndexError(f"{role} actor {index}: the plan has {r.count} ({r.count_key})")
        shared = self.shared.get(role)
        if shared is not None:
            group, bundle, request = shared.role, index // (r.count // shared.count), member_request(shared, r)
        custom = {name: amount for name, amount in request.items() if name not in ("CPU", "GPU")}
        options: dict[str, Any] = {"num_gpus": request.get("GPU", 0.0), "resources": custom}
        if group in self.groups:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self.groups[group], placement_group_bundle_index=bundle
            )
        return options

    def remove(self) -> None:
        """Give the placement groups back (their actors end with them)."""
        from ray.util.placement_group import remove_placement_group

        for group in self.groups.values():
            remove_placement_group(group)
        self.groups = {}
