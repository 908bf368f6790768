"""Social discovery: people and groups to follow, conversations and contacts, search re-ranking.

`state.SocialState` (one per user, the `suggestions` step) keeps the user's side of the graph and
publishes it (`graph` records) so other users' partitions can read followees-of-followees through
the feature store (`store`); `compute.suggest` turns one user's state plus those reads into ranked
suggestions with reasons. `linkpred` evaluates the same code offline; `search` re-ranks search
results with the feed's hydration and scoring code.
"""
