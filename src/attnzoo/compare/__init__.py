"""attnzoo compare: train one network with different attention modules and compare accuracy against cost.

    from attnzoo.compare import CompareConfig, run_compare
    out = run_compare(CompareConfig(modules=["none", "se", "eca"], model="cifar_resnet20", epochs=10, output="runs/x"))
    out["summary"]   # one dict per module: top1_mean, top1_std, params, flops, train_img_per_s, ...

Detection (an Ultralytics YOLO model YAML, trained and validated by Ultralytics)::

    from attnzoo.compare import DetectConfig, run_detect_compare
    out = run_detect_compare(DetectConfig(modules=["none", "cbam"], model="yolo11n.yaml", data="synthetic", epochs=10))
    out["summary"]   # one dict per module: map50_95_mean, map50_95_std, map50, precision, recall, params, flops, ...

The command line is ``attnzoo compare`` (see ``attnzoo compare --help`` and docs/compare.md).
"""

from .config import CompareConfig
from .detect import DetectConfig, run_detect_compare
from .runner import run_compare

__all__ = ["CompareConfig", "run_compare", "DetectConfig", "run_detect_compare"]
