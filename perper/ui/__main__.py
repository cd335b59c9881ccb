"""``python -m perper.ui``: the same as ``perper ui``."""

from perper.ui.command import ui_command

ui_command(prog_name="perper ui")
