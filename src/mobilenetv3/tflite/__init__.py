"""TFLite files without TensorFlow: the reader, the writer, and an int8 interpreter that is
bit-exact with LiteRT's reference kernels.
"""
