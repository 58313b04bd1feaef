"""Normalized events: batches split into items, items mapped to one shape (``relay.event.v1``),
and each message's status kept in order. See docs/events.md.

- ``taxonomy``: the shared types, their ranks, and the status state machine (pure).
- ``mapping``: a provider's mapping as data (``[[mappings]]``, or a preset from
  ``presets.toml``), and how it reads one item.
- ``split``: the items of a request (a JSON array, nested lists, a form).
- ``envelope``: the canonical JSON a ``body = "canonical"`` destination receives.
"""
