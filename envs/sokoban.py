"""Sokoban: push every box onto a target, in rooms generated from a seed and shown as text.

Rooms are made the standard way (as in gym-sokoban): carve floor inside a walled grid by a random walk,
put the boxes on their targets and the player on a free cell (the solved state), then play random
moves *backwards*, where the player may pull a box behind it. Every backward move undoes a legal forward
move, so the scrambled room is solvable by construction; the generator keeps the scrambled state whose
boxes moved farthest from their targets (see `scramble`). `solve` (breadth-first search over player and box positions)
finds a shortest solution for small rooms; tests use it to win every generated room through `step`.

Actions are "up", "down", "left" and "right"; a move into a wall, or a push against a wall or a second
box, leaves the room as it is. Anything else is not admissible and leaves the state unchanged. Reward:
`win_reward` on the step that puts the last box on a target, 0 otherwise. A box pushed into a corner can
make the room unsolvable; the episode then runs on until the rollout's step limit.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

Cell = tuple[int, int]

MOVES: dict[str, Cell] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
MAX_SOLVER_STATES = 200_000  # BFS budget: ample for 1-3 boxes in rooms up to about 8x8


def _add(cell: Cell, move: Cell, times: int = 1) -> Cell:
    return cell[0] + times * move[0], cell[1] + times * move[1]


def carve_floor(rng: random.Random, height: int, width: int) -> frozenset[Cell]:
    """Floor cells from a random walk over the room's interior (the border is always wall)."""
    interior = (height - 2) * (width - 2)
    cell = (rng.randrange(1, height - 1), rng.randrange(1, width - 1))
    floor = {cell}
    while len(floor) < max(3, int(0.8 * interior)):
        row, col = _add(cell, rng.choice(list(MOVES.values())))
        cell = (min(max(row, 1), height - 2), min(max(col, 1), width - 2))
        floor.add(cell)
    return frozenset(floor)


def scramble(
    rng: random.Random, floor: frozenset[Cell], targets: frozenset[Cell], player: Cell, num_moves: int = 300
) -> tuple[Cell, frozenset[Cell]]:
    """Play `num_moves` random backward moves (walk, or pull the box behind) from the solved state; return
    the visited (player, boxes) with the highest score: the boxes' summed Manhattan distance from their
    targets, plus half the player's distance to the nearest box (a pull leaves the player touching the box,
    which would make the first pushes trivial)."""
    boxes = {t: t for t in targets}  # current cell -> the target it started on
    best, best_score = (player, frozenset(targets)), 0
    for _ in range(num_moves):
        move = rng.choice(list(MOVES.values()))
        ahead, behind = _add(player, move), _add(player, move, -1)
        if ahead not in floor or ahead in boxes:
            continue
        if behind in boxes and rng.random() < 0.75:
            boxes[player] = boxes.pop(behind)
        player = ahead
        displacement = sum(abs(c[0] - t[0]) + abs(c[1] - t[1]) for c, t in boxes.items())
        gap = min(abs(c[0] - player[0]) + abs(c[1] - player[1]) for c in boxes)
        score = displacement + 0.5 * gap if displacement else 0
        if score > best_score:
            best, best_score = (player, frozenset(boxes)), score
    return best


def generate_room(
    rng: random.Random, height: int, width: int, num_boxes: int
) -> tuple[frozenset[Cell], frozenset[Cell], Cell, frozenset[Cell]]:
    """(floor, targets, player, boxes) of a solvable room with at least one box off its target."""
    for _ in range(1000):
        floor = carve_floor(rng, height, width)
        if len(floor) < num_boxes + 2:
            continue
        cells = rng.sample(sorted(floor), num_boxes + 1)
        targets = frozenset(cells[:-1])
        player, boxes = scramble(rng, floor, targets, cells[-1])
        if boxes != targets:
            return floor, targets, player, boxes
    raise RuntimeError(f"no solvable {height}x{width} room with {num_boxes} boxes after 1000 tries; use fewer boxes")


def push(floor: frozenset[Cell], player: Cell, boxes: frozenset[Cell], move: Cell) -> tuple[Cell, frozenset[Cell]]:
    """The state after one forward move: walk, push one box, or stay put when blocked."""
    ahead = _add(player, move)
    if ahead not in floor:
        return player, boxes
    if ahead in boxes:
        beyond = _add(ahead, move)
        if beyond not in floor or beyond in boxes:
            return player, boxes
        boxes = (boxes - {ahead}) | {beyond}
    return ahead, boxes


def solve(floor: frozenset[Cell], targets: frozenset[Cell], player: Cell, boxes: frozenset[Cell]) -> list[str] | None:
    """A shortest list of moves that puts every box on a target, or None (unsolvable or too big to search)."""
    start = (player, boxes)
    parents: dict[tuple[Cell, frozenset[Cell]], tuple[Any, str] | None] = {start: None}
    queue = deque([start])
    while queue and len(parents) < MAX_SOLVER_STATES:
        state = queue.popleft()
        if state[1] == targets:
            plan = []
            while parents[state] is not None:
                state, name = parents[state]
                plan.append(name)
            return plan[::-1]
        for name, move in MOVES.items():
            nxt = push(floor, *state, move)
            if nxt not in parents:
                parents[nxt] = (state, name)
                queue.append(nxt)
    return None


def render(
    height: int, width: int, floor: frozenset[Cell], targets: frozenset[Cell], player: Cell, boxes: frozenset[Cell]
) -> str:
    """Rows of characters: # wall, _ floor, . target, $ box, * box on target, @ player, + player on target."""
    rows = []
    for r in range(height):
        row = []
        for c in range(width):
            cell = (r, c)
            if cell == player:
                row.append("+" if cell in targets else "@")
            elif cell in boxes:
                row.append("*" if cell in targets else "$")
            elif cell in targets:
                row.append(".")
            else:
                row.append("_" if cell in floor else "#")
        rows.append("".join(row))
    return "\n".join(rows)


class SokobanEnv:
    """Seeded, solvable Sokoban rooms as text. See the module docstring."""

    task_description = (
        "Push every box onto a target; you can push a box but never pull it. "
        "Map legend: # wall, _ floor, . target, $ box, * box on target, @ you, + you on a target."
    )

    def __init__(self, height: int = 6, width: int = 6, num_boxes: int = 1, win_reward: float = 10.0):
        if height < 4 or width < 4:
            raise ValueError(f"height and width must be >= 4 (walls plus a 2x2 interior), got {height}x{width}")
        if not 1 <= num_boxes <= (height - 2) * (width - 2) // 4:
            raise ValueError(
                f"num_boxes must be in [1, {(height - 2) * (width - 2) // 4}] for a {height}x{width} room "
                f"(a quarter of the interior), got {num_boxes}"
            )
        self.height, self.width, self.num_boxes = height, width, num_boxes
        self.win_reward = float(win_reward)
        self._floor: frozenset[Cell] = frozenset()
        self._targets: frozenset[Cell] = frozenset()
        self._player: Cell = (0, 0)
        self._boxes: frozenset[Cell] = frozenset()
        self._done = True

    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        room = generate_room(random.Random(seed), self.height, self.width, self.num_boxes)
        self._floor, self._targets, self._player, self._boxes = room
        self._done = False
        obs = self._observation()
        return obs, self._info(obs, won=False)

    def step(self, action_text: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset(seed) first")
        move = MOVES.get(" ".join(action_text.lower().split()))
        if move is not None:
            self._player, self._boxes = push(self._floor, self._player, self._boxes, move)
        won = self._boxes == self._targets
        self._done = won
        obs = self._observation()
        return obs, self.win_reward if won else 0.0, won, self._info(obs, won=won)

    def close(self) -> None:
        self._done = True

    def expert_action(self) -> str:
        """The first move of a shortest solution; "up" when the room can no longer be solved."""
        plan = solve(self._floor, self._targets, self._player, self._boxes)
        return plan[0] if plan else "up"

    def _observation(self) -> str:
        return render(self.height, self.width, self._floor, self._targets, self._player, self._boxes)

    def _info(self, obs: str, won: bool) -> dict[str, Any]:
        return {"anchor": obs, "won": won, "admissible_actions": [] if self._done else list(MOVES)}
