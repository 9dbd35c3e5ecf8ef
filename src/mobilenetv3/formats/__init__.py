"""Readers for foreign weight formats (TensorFlow checkpoints, release tarballs), TF-free.

The official MobileNet weights ship as TensorFlow checkpoints inside `.tgz` files; these
modules read them with numpy alone so the project never needs TensorFlow installed.
"""
