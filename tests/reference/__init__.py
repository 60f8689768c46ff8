"""Slow reference implementations ("oracles"), one file per paper, written from the paper and the official code.

Each is an independent computation of a registered module (loops, explicit matrices, unfold: clarity over
speed), used by the faithfulness tests and by the benchmarks.  A reference takes the module (to read its
weights) and the inputs, and returns what the module must return.
"""
