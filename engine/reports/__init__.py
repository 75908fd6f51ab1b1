"""Reports: one self-contained HTML file for a run or a bake-off, with its curves, metrics, confusion
matrix and errors. Sits above the experiments (a bake-off's leaderboard) and inference (it evaluates).
"""
