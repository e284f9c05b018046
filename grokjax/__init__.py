"""grokjax: train grids of small networks on modular arithmetic at once, to study grokking.

From Python, ``grokjax.run`` trains a sweep and ``grokjax.load`` reads a results
folder; both return a ``grokjax.Results`` (see ``grokjax.api``). They load on first
use, so that ``python -m grokjax.report`` and the other commands start without pandas.
"""

__all__ = ["Results", "load", "run"]


def __getattr__(name: str):
    if name in __all__:
        from grokjax import api

        return getattr(api, name)
    raise AttributeError(f"module 'grokjax' has no attribute {name!r}")
