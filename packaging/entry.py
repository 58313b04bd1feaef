"""PyInstaller's entry point: the same `relay` command as the installed package."""

from relay.cli import main

raise SystemExit(main())
