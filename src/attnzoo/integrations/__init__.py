"""Integrations with real models: model surgery (timm / torchvision), timm attn_layer, Ultralytics YOLO."""

__all__: list[str] = []
