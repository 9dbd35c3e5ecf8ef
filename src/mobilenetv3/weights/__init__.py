"""Weights on disk: TF checkpoints (TensorBundle), release tarballs, safetensors, and the
mapping of any of them onto a model (`loading`); explicit, verified downloads (`hub`).

The official MobileNet weights ship as TensorFlow checkpoints inside `.tgz` files; these
modules read them with numpy alone so the project never needs TensorFlow installed.
"""
