"""The Lambda image's entry point, ``archiver.lambda_handler.handler`` as stacks name it.

A re-export of :func:`archiver.lambda_mode.handler.handler`; nothing else belongs here.
"""

from archiver.lambda_mode.handler import handler

__all__ = ["handler"]
