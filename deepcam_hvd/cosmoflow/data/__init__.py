"""CosmoFlow data: the reference's one-sample files, checked, read into tf.data, synthesized.

* ``layout``: where samples live (``train/``, ``validation/``), their forms and sizes;
* ``tfrecord`` / ``npy``: one sample per file in each form, written, read and parsed;
* ``check``: every file validated up front, one line per bad file naming it;
* ``dataset``: the tf.data pipelines (``read_dataset`` in a given order, ``make_dataset``
  sharded and shuffled as the reference) and ``open_root`` for the trainer;
* ``stage``: copying a rank's share to node-local storage;
* ``synth``: synthetic universes whose statistics follow their parameters.

``layout`` and ``stage`` do not import TensorFlow; the other modules do.
"""
