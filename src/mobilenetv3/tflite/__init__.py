"""TFLite files without TensorFlow: one data model (`model`), its parser (`reader`) and its
writer (`writer`), and interpreters of it in PyTorch (`interpreter`: int8 bit-exact with
LiteRT's reference kernels, float for calibration). The exporters that build the model from a
network are `export.tflite` (float) and `quantize.tflite_int8` (int8).
"""
