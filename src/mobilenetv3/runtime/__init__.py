"""Running models: one runner interface over the inference engines, and evaluation.
"""
