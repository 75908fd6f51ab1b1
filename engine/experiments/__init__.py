"""Experiments: many runs at once. The bake-off (every model x strategy on one frozen split, ranked, with
its typed leaderboard). Sits above training and inference.
"""
