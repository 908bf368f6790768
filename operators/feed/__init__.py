"""The feed pipeline, one module per stage kind (home-mixer style):
candidates → filters → hydrate → scoring → controls → mixing, composed in `pipeline.rank`."""

from operators.feed import candidates, controls, filters, hydrate, mixing, scoring
from operators.feed.pipeline import rank

__all__ = ["candidates", "controls", "filters", "hydrate", "mixing", "rank", "scoring"]
