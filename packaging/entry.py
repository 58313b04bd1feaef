"""PyInstaller's entry point: the same `relay` command as the installed package.

First, in the one-file build's child, follow the launcher (relay.launcher): die with it,
leave no unpacked copy behind."""

from relay.launcher import follow_parent

follow_parent()

from relay.cli import main  # noqa: E402 - after the child is tied to its launcher

raise SystemExit(main())
