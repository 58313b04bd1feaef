"""Delivery: ``lanes`` (the ``Scheduler``: every destination's lane, woken after each
commit), ``lane`` (one destination: claim, attempt, record), ``plan`` (what a lane does
next, a pure function). Importing the package loads none of them, so ``plan`` stays cheap.
"""
