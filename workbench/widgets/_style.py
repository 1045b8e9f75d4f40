"""The widgets' one visual style: one colour for primary actions, one for danger, the same
status colours everywhere (messages, badges, highlighted rows, charts).

Buttons get their colour from ipywidgets' own `ButtonStyle` (`button_color`, `text_color`), not
from a stylesheet: it needs no front-end build and no injected CSS, and looks the same in
JupyterLab, Notebook 7, VS Code and Binder. A panel has at most one primary button (its main
action: Send, Run, Send shown, Start) and danger is kept for what destroys or disrupts (Kill,
Reset offsets); every other button is the theme's plain one.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

#: Primary actions, links, the first series of a chart.
PRIMARY = "#1f5fbf"
#: Danger: destructive buttons, errors, offline partitions, the STOP status.
DANGER = "#b00020"
#: Success messages and the OK status.
OK = "#1b7f3b"
#: Warnings, under-replicated partitions, the WARN status.
WARN = "#a05a00"
#: Secondary text (notes, axis labels).
MUTED = "#555"
#: Row backgrounds for a bad and a warning row (tables and the partition grid).
DANGER_BG = "#fde0e0"
WARN_BG = "#fff4d6"

#: `message(kind=...)` colours.
MESSAGE_COLOURS = {"error": DANGER, "ok": OK, "info": MUTED, "warn": WARN}
#: Burrow statuses (the group monitor's badges): STOP is danger, STALL between warn and danger,
#: ERR (the lag could not be evaluated) purple so it is not mistaken for a stopped group.
STATUS_COLOURS = {"OK": OK, "WARN": WARN, "STALL": "#b34700", "STOP": DANGER, "ERR": "#6a1b9a"}


def _button(role: str, **kwargs: Any) -> widgets.Button:
    colour = PRIMARY if role == "primary" else DANGER
    button = widgets.Button(
        button_style=role,
        style=widgets.ButtonStyle(button_color=colour, text_color="white", font_weight="bold"),
        **kwargs,
    )
    button.add_class(f"workbench-{role}")
    return button


def primary_button(**kwargs: Any) -> widgets.Button:
    """A panel's main action, in `PRIMARY`."""
    return _button("primary", **kwargs)


def danger_button(**kwargs: Any) -> widgets.Button:
    """A destructive or disruptive action, in `DANGER`."""
    return _button("danger", **kwargs)
