"""Where a run's metrics go besides ``metrics.jsonl``, and how runs are compared.

:mod:`r1lab.tracking.trackers` sends every metrics line of a run to the trackers its
``run.trackers`` chose (TensorBoard, Weights & Biases, trackio); :mod:`r1lab.tracking.report`
is ``r1lab report``, which overlays the curves of several runs and sets their final
metrics side by side; :mod:`r1lab.tracking.memory` measures the peak memory of a piece of
code on any device.
"""
