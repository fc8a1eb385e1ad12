import numpy as np

from hgpo.batch import Ragged, StepBatch


def make_batch(offset: int, n: int) -> StepBatch:
    rng = np.random.default_rng(offset)
    return StepBatch(
        group_ids=np.arange(n) // 2,
        traj_ids=np.arange(n) + offset,
        step_ids=np.zeros(n, np.int64),
        state_keys=rng.integers(0, 2**63, n).astype(np.uint64),
        action_keys=np.zeros(n, np.uint64),
        rewards=rng.random(n),
        invalid=np.zeros(n, bool),
        traj_won=np.zeros(n, bool),
        traj_failed=np.zeros(n, bool),
        prompt_ids=Ragged.from_rows([[offset + i] * (i + 1) for i in range(n)], np.int32),
        response_ids=Ragged.from_rows([[i] * (n - i) for i in range(n)], np.int32),
        response_logprobs=Ragged.from_rows([[-0.5] * (n - i) for i in range(n)], np.float32),
    )


def test_ragged_rows_select_and_concat():
    r = Ragged.from_rows([[1, 2], [], [3]], np.int32)
    assert r.lengths.tolist() == [2, 0, 1] and r[0].tolist() == [1, 2] and r[1].size == 0
    s = Ragged.concat([r, Ragged.from_rows([[4, 5, 6]], np.int32)])
    assert [s[i].tolist() for i in range(len(s))] == [[1, 2], [], [3], [4, 5, 6]]
    assert [x.tolist() for x in (s.select(np.array([3, 0]))[0], s.select(np.array([3, 0]))[1])] == [[4, 5, 6], [1, 2]]


def test_step_batch_concat_select_and_advantages():
    a, b = make_batch(0, 3), make_batch(100, 2)
    both = StepBatch.concat([a, b])
    assert len(both) == 5 and both.traj_ids.tolist() == [0, 1, 2, 100, 101]
    assert both.prompt_ids[3].tolist() == [100]
    picked = both.select(np.array([4, 1]))
    assert picked.traj_ids.tolist() == [101, 1] and picked.response_ids[0].tolist() == [1]
    with_adv = picked.with_advantages(np.array([1.0, -1.0]))
    assert with_adv.advantages.tolist() == [1.0, -1.0] and picked.advantages is None
