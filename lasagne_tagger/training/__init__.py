"""Training: the one loop both stages drive (``loop``), fine-tuning,
checkpoints, run folders and losses.
"""
