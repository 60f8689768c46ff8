"""The ``attnzoo bench`` cost profiler.

``cli`` (argument parsing), ``runner`` (talks to the worker) and ``report`` (JSON/CSV/Markdown/table/plot)
run in the parent and import neither torch nor the optional ``rich``/``matplotlib`` at import time;
``worker`` (a server that forks one fresh process per case) and ``measure`` (params, FLOPs, latency, peak
memory) run in the child processes.
"""
