"""``python -m perper.cli`` (how ``perper run --workers`` starts its workers)."""

from perper.cli import main

main()
