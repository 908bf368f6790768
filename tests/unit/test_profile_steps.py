"""`scripts.profile_steps` charges each py-spy sample to a step and to what Bytewax called."""

from __future__ import annotations

from scripts.profile_steps import classify

RUN = ("<module>", "run.py", 355)


def frames(*funcs: str) -> list[tuple[str, str, int]]:
    return [RUN, *((f, "flows/adapters.py", 1) for f in funcs),
            ("rank", "operators/feed/pipeline.py", 40)]


def test_a_logic_is_charged_by_what_bytewax_called():
    assert classify(frames("_Debounced.on_notify", "_Debounced._fire", "UserLogic._fire"),
                    {}) == "UserLogic.timer"
    assert classify(frames("UserLogic.on_eof", "_Debounced._fire", "UserLogic._run"),
                    {}) == "UserLogic.eof"
    assert classify(frames("SuggestionsLogic.on_eof", "_Debounced.on_eof", "_Debounced._fire"),
                    {}) == "SuggestionsLogic.eof"
    # a rank at a read runs inside the batch that brought the read
    assert classify(frames("UserLogic.on_batch", "UserLogic._rank_now", "_Debounced._run_now"),
                    {}) == "UserLogic.batch"


def test_samples_without_a_python_frame_are_the_runtime():
    assert classify([("_run_module_as_main", "<frozen runpy>", 198), RUN], {}) == \
        "bytewax runtime"
