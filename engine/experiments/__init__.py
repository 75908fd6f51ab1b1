"""Experiments: many runs at once. The bake-off (every model x strategy on one frozen split, ranked)
and the self-contained HTML report of a run or a bake-off. Sits above training and inference.
"""
