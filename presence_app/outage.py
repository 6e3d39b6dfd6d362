"""One warning per registry outage, not one per failed call."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class OutageLog:
    def __init__(self) -> None:
        self.down = False

    def failed(self, error: BaseException) -> None:
        if not self.down:
            logger.warning("presence registry unreachable: %s", error)
        self.down = True

    def recovered(self) -> None:
        if self.down:
            logger.warning("presence registry reachable again")
        self.down = False
