"""Tags: the vocabulary and NumPy decoding, the LSTM tagger, offline
features and the photo-to-tags pipeline.
"""
