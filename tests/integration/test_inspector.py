"""The feed inspector in a real headless Chromium: real feeds in Redis (the flow run in-process on a
generated log), `persona serve`'s app on a free port, the page opened with ?user=…; the DOM shows the
user's posts, affinities and live charts, and the screenshot is a non-blank PNG."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
import uvicorn

from reader.http import create_app
from schemas.keyspace import Keyspace
from tests.integration.inproc import cleanup, generated_log, run_inprocess, settings_for

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def served(live):
    """(base url, settings, redis client, a user id with a feed and a profile)."""
    import redis
    prefix = f"test-inspect-{uuid.uuid4().hex[:8]}"
    settings = settings_for(live, prefix)
    client = redis.Redis.from_url(live[1])
    payloads, *_ = generated_log(users=40, days=2.0, seed=21, bad=0, duplicates=0)
    run_inprocess(settings, payloads)
    ks = Keyspace(prefix, client.get(f"{prefix}:active").decode())
    best = None
    for key in client.scan_iter(f"{ks.base}:profile:*", count=1000):
        profile = orjson.loads(client.get(key))
        feed = orjson.loads(client.get(ks.feed(profile["user_id"])) or b'{"items": []}')
        score = (bool(profile["authors"]) + bool(profile["topics"]), len(feed["items"]))
        if best is None or score > best[0]:
            best = (score, profile["user_id"])
    assert best and best[0][1] >= 3, "the run left no user with a feed"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", settings, client, best[1]
    finally:
        server.should_exit = True
        thread.join(10)
        cleanup(client, prefix)


def run_chromium(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        pytest.skip("chromium not found (Debian: apt-get install -y chromium; .ci/run installs it)")
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:6]}"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=120, check=False)


def test_inspector_page_shows_the_users_feed_affinities_and_charts(served, tmp_path):
    base, settings, client, user = served
    # a little API traffic for the charts
    for _ in range(5):
        urllib.request.urlopen(f"{base}/feed/{user}?limit=5", timeout=5).read()
    ks = Keyspace(settings.redis.prefix, client.get(f"{settings.redis.prefix}:active").decode())
    # an experiment's counters, as the workers write them: 1,000 users an arm, 20 impressions
    # each; control users engage 1 or 3 times, `small` users 0 or 2 (a clear harm)
    for arm, (low, high) in (("control", (1, 3)), ("small", (0, 2))):
        counts = {"users": 1000, "impressions": 20_000, "engagements": 500 * (low + high),
                  "moments": {"engagements*engagements": 500 * (low * low + high * high),
                              "impressions*impressions": 1000 * 400,
                              "engagements*impressions": 500 * 20 * (low + high)}}
        client.set(ks.experiment("size", arm), orjson.dumps(counts))
        client.sadd(ks.experiments, f"size/{arm}")
    url = f"{base}/inspect?user={user}"
    done = run_chromium(["--virtual-time-budget=8000", "--dump-dom", url], tmp_path)
    dom = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0 and "<html" in dom, done.stderr.decode()[-2000:]

    feed = orjson.loads(client.get(ks.feed(user)))
    profile = orjson.loads(client.get(ks.profile(user)))
    for item in feed["items"]:  # every post of the feed, in a row of the table
        assert f'data-post-id="{item["post_id"]}"' in dom, item["post_id"]
    first = feed["items"][0]
    assert f'{first["score"]:.4f}' in dom
    assert first["reasons"][0]["code"] in dom
    for name, _value in (profile["authors"] + profile["topics"])[:3]:
        assert f'title="{name}"' in dom  # top affinities rendered
    assert f"{user} · {len(feed['items'])} items" in dom
    assert "<polyline" in dom  # the live charts drew from /inspect/api/stats
    assert 'data-arm="size/small"' in dom and "harm (engagement_rate)" in dom  # GET /experiments
    # the page says "401 unauthorized" on a refused token; a bare "401" can be data (p000401)
    assert "401 unauthorized" not in dom.split("<script>")[0] and "error" not in _status(dom)


def _status(dom: str) -> str:
    start = dom.index('id="status"')
    return dom[start:dom.index("</span>", start)]


def test_inspector_screenshot_is_a_non_blank_png(served, tmp_path):
    from PIL import Image

    base, _settings, _client, user = served
    shot = tmp_path / "inspect.png"  # PERSONA_KEEP_SCREENSHOT=path keeps a copy
    done = run_chromium(["--virtual-time-budget=6000", "--window-size=1280,900",
                         f"--screenshot={shot}", f"{base}/inspect?user={user}"], tmp_path)
    assert done.returncode == 0 and shot.exists(), done.stderr.decode()[-2000:]
    data = shot.read_bytes()
    if os.environ.get("PERSONA_KEEP_SCREENSHOT"):
        Path(os.environ["PERSONA_KEEP_SCREENSHOT"]).write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (1280, 900)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is (nearly) one flat colour"
    # content in the feed area, not just the header bar: many non-background pixels below it
    feed_area = image.crop((20, 120, 900, 700))
    background = max(feed_area.getcolors(maxcolors=1 << 20))[1]
    busy = sum(n for n, c in feed_area.getcolors(maxcolors=1 << 20) if c != background)
    assert busy > 0.03 * feed_area.width * feed_area.height
