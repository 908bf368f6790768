"""Bytewax dataflows (topology only) and their thin adapters around `operators`."""

__all__ = ["build_flow", "get_flow"]


def __getattr__(name):  # lazy: importing flows.adapters must not build a flow
    if name in __all__:
        from flows import feeds
        return getattr(feeds, name)
    raise AttributeError(name)
