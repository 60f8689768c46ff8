"""Resamplers (B×C×H×W in, resized B×C'×H'×W' out): one file per paper."""

__all__: list[str] = []
