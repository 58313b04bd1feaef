"""``verify = "none"``: accept every request. For trusted networks and tests only."""

from __future__ import annotations

from typing import Literal

from relay.configtypes import SourceBase
from relay.verify.base import Inbound


class NoneSource(SourceBase):
    verify: Literal["none"]

    def build_verifier(self) -> NoneVerifier:
        return NoneVerifier()


class NoneVerifier:
    def verify(self, request: Inbound, now: float) -> None:
        return None
