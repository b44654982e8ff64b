"""CosmoFlow (MLPerf HPC) on TensorFlow/Keras: the network, its learning-rate schedule and data.

The modules here import TensorFlow, so nothing on the PyTorch/DeepCAM path imports this
package at module level; CosmoFlow's plain facts are in ``deepcam_hvd.workloads.cosmoflow``.
"""
