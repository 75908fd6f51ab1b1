"""The dataset doctor: one pass over a dataset through training's feature cache that finds leaks between
splits, duplicates and conflicting labels, likely wrong labels, poor photos and class imbalance.
Sits above training (it shares the feature cache and the linear head) and beside the bake-off.
"""
