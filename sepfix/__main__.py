"""`python -m sepfix` runs the CLI."""

from sepfix.cli import main

raise SystemExit(main())
