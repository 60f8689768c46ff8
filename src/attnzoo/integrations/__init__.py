"""Integrations with real models: model surgery (timm / torchvision), timm ``attn_layer``, Ultralytics YOLO.

Only torch is imported here; timm, torchvision and ultralytics are imported inside the functions that need
them (``attnzoo.integrations.ultralytics.register()`` imports ultralytics when called).
"""

from .surgery import InsertedAttention, Insertion, insert
from .timm import timm_attn

__all__ = ["insert", "timm_attn", "Insertion", "InsertedAttention"]
