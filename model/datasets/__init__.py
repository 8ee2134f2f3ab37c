"""Datasets: the MTG-Jamendo metadata reader, captions from tags, and the built-in synthetic dataset."""
