"""Writes seeds/tiny.ckpt.{index,data-00000-of-00001}: a TF-written checkpoint for the fuzz
suite (truth from TensorFlow, not from this package). Run once with a TensorFlow venv:
/tmp/tfvenv/bin/python tests/fuzz/make_checkpoint_seed.py"""

from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
rng = np.random.default_rng(0)
shapes = {"MobilenetV3/Conv/weights": (3, 3, 3, 4), "MobilenetV3/Conv/BatchNorm/beta": (4,),
          "MobilenetV3/Logits/Conv2d_1c_1x1/biases": (5,)}
variables = []
for name, shape in shapes.items():
    value = rng.standard_normal(shape).astype(np.float32)
    variables.append(tf1.Variable(value, name=name))
    variables.append(tf1.Variable(value * 0.5, name=f"{name}/ExponentialMovingAverage"))
variables.append(tf1.Variable(np.int64(1234), name="global_step"))
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    out = Path(__file__).parent / "seeds" / "tiny.ckpt"
    tf1.train.Saver(variables).save(session, str(out), write_meta_graph=False)
