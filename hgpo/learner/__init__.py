"""Learner: recomputes logprobs and updates the policy with PPO-clip."""
