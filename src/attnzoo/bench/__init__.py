"""The ``attnzoo bench`` cost profiler."""
