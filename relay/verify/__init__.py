"""Verifiers: one module per scheme, all behind the ``Verifier`` interface.

Adding a scheme is adding one module with a ``SourceBase`` subclass (its config, with
``verify: Literal["name"]``) and a verifier class, then one line in ``schemes``. This
package loads none of them: ``relay.verify.schemes`` has the union of every scheme's
config, for the config file.
"""

from __future__ import annotations

from relay.verify.base import Inbound, Rejected, Verifier

__all__ = ["Inbound", "Rejected", "Verifier"]
