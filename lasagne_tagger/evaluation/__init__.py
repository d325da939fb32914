"""Metrics (accuracies, tag precision/recall/F1, bootstrap intervals)
and plots.  NumPy and matplotlib.
"""
