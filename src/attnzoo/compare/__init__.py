"""attnzoo compare: train one network with different attention modules and compare accuracy against cost.

    from attnzoo.compare import CompareConfig, run_compare
    out = run_compare(CompareConfig(modules=["none", "se", "eca"], model="cifar_resnet20", epochs=10, output="runs/x"))
    out["summary"]   # one dict per module: top1_mean, top1_std, params, flops, train_img_per_s, ...

The command line is ``attnzoo compare`` (see ``attnzoo compare --help`` and docs/compare.md).
"""

from .config import CompareConfig
from .runner import run_compare

__all__ = ["CompareConfig", "run_compare"]
