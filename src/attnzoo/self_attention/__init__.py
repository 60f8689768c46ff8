"""Global self-attention family: non-local style blocks, multi-head attention on feature maps, CoT."""

from . import cot, multihead, nonlocal_blocks
from .cot import *  # noqa: F401,F403
from .multihead import *  # noqa: F401,F403
from .nonlocal_blocks import *  # noqa: F401,F403

__all__ = [*nonlocal_blocks.__all__, *multihead.__all__, *cot.__all__]
