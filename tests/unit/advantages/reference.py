"""Slow reference estimators written straight from spec/hgpo.md with dicts and loops (no hgpo imports).

Means and deviations use exact fractions, so "a_L is exactly 0" means the return equals its bucket's
exact mean. Used by the property tests and by bench/advantages.py as the naive baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction


def _rows_by_trajectory(traj_ids, step_ids):
    """{traj: {step: row}}."""
    trajectories = defaultdict(dict)
    for row, (traj, step) in enumerate(zip(traj_ids, step_ids, strict=True)):
        trajectories[int(traj)][int(step)] = row
    return trajectories


def _centred(values):
    """Exact deviations from the exact mean, as Fractions."""
    exact = [Fraction(float(v)) for v in values]
    mean = sum(exact) / len(exact)
    return [v - mean for v in exact]


def _normalized(values, ddof, normalize, eps):
    """(v - mean) / (std + eps) with std dividing by n - ddof, or v - mean."""
    deviations = _centred(values)
    if normalize == "none":
        return [float(d) for d in deviations]
    std = math.sqrt(float(sum(d * d for d in deviations) / (len(values) - ddof)))
    return [float(d) / (std + eps) for d in deviations]


def ref_discounted_returns(traj_ids, step_ids, rewards, gamma, invalid=None, invalid_penalty=0.1):
    out = [0.0] * len(rewards)
    for steps in _rows_by_trajectory(traj_ids, step_ids).values():
        later = 0.0
        for step in sorted(steps, reverse=True):
            row = steps[step]
            later = float(rewards[row]) + gamma * later
            out[row] = later
    if invalid is not None:
        out = [r - invalid_penalty * float(i) for r, i in zip(out, invalid, strict=True)]
    return out


def ref_grpo_advantages(group_ids, traj_ids, scores, normalize="std", eps=1e-6):
    members = defaultdict(list)
    for row, group in enumerate(group_ids):
        members[int(group)].append(row)
    out = [0.0] * len(scores)
    for rows in members.values():
        if len(rows) == 1:  # "A group with one row gets mean 0, std 1."
            score = float(scores[rows[0]])
            out[rows[0]] = score / (1.0 + eps) if normalize == "std" else score
            continue
        for row, a in zip(rows, _normalized([scores[r] for r in rows], 1, normalize, eps), strict=True):
            out[row] = a
    return out


def ref_gigpo_advantages(
    group_ids, traj_ids, step_ids, state_keys, returns, scores, omega=1.0, normalize="std", eps=1e-6
):
    episode = ref_grpo_advantages(group_ids, traj_ids, scores, normalize, eps)
    anchors = defaultdict(list)
    for row in range(len(returns)):
        anchors[(int(group_ids[row]), int(state_keys[row]))].append(row)
    step = [0.0] * len(returns)
    for rows in anchors.values():
        if len(rows) > 1:
            for row, a in zip(rows, _normalized([returns[r] for r in rows], 1, normalize, eps), strict=True):
                step[row] = a
    return [e + omega * s for e, s in zip(episode, step, strict=True)]


def _context(trajectory_states, trajectory_actions, step, level):
    """States at steps t-L+1..t, plus (if actions) the actions at steps t-L+1..t-1."""
    states = tuple(trajectory_states[step - level + 1 : step + 1])
    if trajectory_actions is None:
        return states
    return states, tuple(trajectory_actions[step - level + 1 : step])


def _sequences(traj_ids, step_ids, keys):
    """{traj: [key at step 0, key at step 1, ...]}."""
    return {
        traj: [int(keys[steps[s]]) for s in range(len(steps))]
        for traj, steps in _rows_by_trajectory(traj_ids, step_ids).items()
    }


def ref_level_items(group_ids, traj_ids, step_ids, state_keys, returns, history_length, normalize, eps, action_keys):
    """{level: {row: a_L}} for rows in buckets of at least 2 rows, and {level: {bucket key: [rows]}}."""
    states = _sequences(traj_ids, step_ids, state_keys)
    actions = None if action_keys is None else _sequences(traj_ids, step_ids, action_keys)
    items, buckets = {}, {}
    for level in range(1, history_length + 2):
        members = defaultdict(list)
        for row in range(len(returns)):
            traj, step = int(traj_ids[row]), int(step_ids[row])
            if step >= level - 1:
                context = _context(states[traj], None if actions is None else actions[traj], step, level)
                members[(int(group_ids[row]), level, context)].append(row)
        items[level], buckets[level] = {}, members
        for rows in members.values():
            if len(rows) >= 2:
                for row, a in zip(rows, _normalized([returns[r] for r in rows], 0, normalize, eps), strict=True):
                    items[level][row] = a
    return items, buckets


def ref_hgpo_advantages(
    group_ids,
    traj_ids,
    step_ids,
    state_keys,
    returns,
    history_length=2,
    alpha=1.0,
    weight_offset=1,
    normalize="std",
    eps=1e-6,
    action_keys=None,
    episode_scores=None,
):
    items, _ = ref_level_items(
        group_ids, traj_ids, step_ids, state_keys, returns, history_length, normalize, eps, action_keys
    )
    episode = None
    if episode_scores is not None:
        episode = ref_grpo_advantages(group_ids, traj_ids, episode_scores, normalize, eps)
    out = []
    for row in range(len(returns)):
        row_items = [] if episode is None else [(0, episode[row])]
        row_items += [(level, items[level][row]) for level in sorted(items) if row in items[level]]
        kept = [(level, a) for level, a in row_items if a != 0.0]
        if not kept:
            out.append(0.0)
            continue
        weights = [float(level + weight_offset) ** alpha for level, _ in kept]
        out.append(sum(w * a for w, (_, a) in zip(weights, kept, strict=True)) / (sum(weights) + eps))
    return out


def ref_level_diagnostics(
    group_ids, traj_ids, step_ids, state_keys, returns, history_length=2, normalize="std", eps=1e-6, action_keys=None
):
    n = len(returns)
    items, buckets = ref_level_items(
        group_ids, traj_ids, step_ids, state_keys, returns, history_length, normalize, eps, action_keys
    )
    metrics = {}
    for level in range(1, history_length + 2):
        sizes = [len(rows) for rows in buckets[level].values()]
        prefix = f"adv/level{level}"
        metrics[f"{prefix}/buckets"] = float(len(sizes))
        metrics[f"{prefix}/nonsingleton_buckets"] = float(sum(1 for s in sizes if s >= 2))
        metrics[f"{prefix}/mean_bucket_size"] = sum(sizes) / len(sizes) if sizes else 0.0
        metrics[f"{prefix}/nonzero_share"] = sum(1 for a in items[level].values() if a != 0.0) / n if n else 0.0
    states = _sequences(traj_ids, step_ids, state_keys)
    actions = None if action_keys is None else _sequences(traj_ids, step_ids, action_keys)
    deepest = defaultdict(set)  # (group, state) -> deepest contexts seen there
    anchor_of = []
    for row in range(n):
        traj, step = int(traj_ids[row]), int(step_ids[row])
        depth = min(step, history_length) + 1
        context = _context(states[traj], None if actions is None else actions[traj], step, depth)
        anchor = (int(group_ids[row]), int(state_keys[row]))
        deepest[anchor].add(context)
        anchor_of.append(anchor)
    inconsistent = sum(1 for anchor in anchor_of if len(deepest[anchor]) > 1)
    metrics["adv/context_inconsistency_rate"] = inconsistent / n if n else 0.0
    return metrics
