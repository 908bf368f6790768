"""Notifications: candidates from the event stream, a decision per candidate (send now, delay,
aggregate, suppress) with a reason code and the predicted open probability, and an online River model
of P(open) per recipient over a global model. Plain, picklable Python (no Bytewax): the streaming flow
(`flows/feeds.py`, step `notifications`) and the in-process evaluation (`driver.py`) run the same code.

    candidates.py  which events make candidates, for whom (routing shared by flow and driver)
    model.py       features and the global + residual per-recipient P(open) models
    policy.py      quiet hours, budgets, best hour: the decision for one candidate
    state.py       everything one recipient's partition keeps; applies events and candidates
    driver.py      the whole notification topology in one process (evaluation, replays)
    evaluate.py    closed-loop evaluation against the generator's planted behaviour, with baselines
"""

from operators.notifications.candidates import Candidate, notification_messages
from operators.notifications.state import RecipientState

__all__ = ["Candidate", "RecipientState", "notification_messages"]
