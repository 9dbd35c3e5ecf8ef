"""Weights on disk: TF checkpoints (`tensorbundle`), release tarballs (`archive`), this
project's `.safetensors` (`safetensors_io`), and the mapping of any of them onto a model
(`loading`); explicit, verified downloads (`hub`). Every bad file ends in one `WeightsError`
(`errors`) naming the file and what is wrong.

The official MobileNet weights ship as TensorFlow checkpoints inside `.tgz` files; these
modules read them with numpy alone so the project never needs TensorFlow installed.
"""
