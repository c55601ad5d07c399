"""``segformer-lab demo``: the main job, on an embedded dataset, from nothing to a report.

1. generate (or reuse) the scenes dataset (``data.scenes``: 14 classes, ADE20K layout):
   ``dataset``, which also scores the majority-class baseline;
2. plan the training steps (``budget``): ``--steps``, or as many as ``--budget`` minutes
   (the whole demo, dataset included) allow on this machine, calibrated on a few real
   training steps; the plan is kept in ``OUT/plan.json``;
3. train every variant with one recipe (``recipe``: the packaged ``demo.yaml``) and seed
   through the training engine, each into ``OUT/runs/<model>-seed<k>``, and score its
   final weights on the validation split with the input's short side at the training
   size and at twice it (a resolution sweep: extrapolation) (``runs``: finished runs are
   reused, unfinished ones resume);
4. count parameters and MACs at 512x512 and time CPU inference at 512x512, all models in
   turns (``measure``);
5. write ``OUT/report.md`` (``report``), ``OUT/results.json`` and the plots (``plots``):
   mIoU vs GMACs, training curves, mIoU vs evaluation size, predictions.

``command`` holds the command line (``add_arguments``, ``run``) and runs the stages in order.
"""

from .command import add_arguments, run

__all__ = ["add_arguments", "run"]
