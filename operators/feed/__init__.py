"""The feed pipeline, one module per stage kind (home-mixer style):
candidates → filters → hydrate → scoring → mixing, composed in `pipeline.rank`."""

from operators.feed import candidates, filters, hydrate, mixing, scoring
from operators.feed.pipeline import rank

__all__ = ["candidates", "filters", "hydrate", "mixing", "rank", "scoring"]
