"""Rollout: multi-turn episodes of a generation engine against a pool of text environments."""
