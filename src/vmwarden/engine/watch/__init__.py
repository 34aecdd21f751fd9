"""The watch daemon: events, power-on gate, reconcile, alerts and metrics.

``Watcher`` is the daemon; ``WatchState`` is what it knows (and ``WatchState.decide`` the
admission hook point); ``Judge`` the gate's judgement.
"""

from vmwarden.engine.watch.daemon import Watcher
from vmwarden.engine.watch.gate import DAEMON_ACTORS, GATE_ACTOR, WATCH_ACTOR
from vmwarden.engine.watch.judge import Judge, Judgement
from vmwarden.engine.watch.state import WatchConfig, WatchState

__all__ = [
    "DAEMON_ACTORS",
    "GATE_ACTOR",
    "WATCH_ACTOR",
    "Judge",
    "Judgement",
    "WatchConfig",
    "WatchState",
    "Watcher",
]
