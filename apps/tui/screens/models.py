"""The model picker: catalog models with their state here, or a typed .gguf path or endpoint URL.

Boundary: choosing, not loading. It dismisses with the request string (a catalog id, a path,
or `http://host:port/v1#model` for the `remote` backend) or None; the app loads the model in
a worker and keeps the previous one if that fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from edgeai.config import Settings
from edgeai.models.resolve import artifact_state  # the CLI's wording too

FREE_TEXT = "…or type a .gguf path, or an endpoint like http://127.0.0.1:8080/v1#model"


@dataclass(frozen=True)
class PickerRow:
    request: str
    text: str
    enabled: bool



def catalog_rows(settings: Settings, current: str | None) -> list[PickerRow]:
    from edgeai.models import load_catalog

    rows = []
    for entry in load_catalog():
        if entry.role == "speech":  # Whisper: the microphone's model, never the chat's
            continue
        for art in entry.artifacts:
            request = entry.id if len(entry.artifacts) == 1 else f"{entry.id}:{art.quant}@{art.format}"
            mark = "●" if current in (request, entry.id) else " "
            state = artifact_state(entry, art, settings) if entry.chat else "base model: cannot chat"
            role = entry.role if entry.role in ("default", "quality") else ""
            text = f"{mark} {request:<28} {role:<8} {art.size_label:>7}  {state}"
            rows.append(PickerRow(request, text, entry.chat))
    return rows


class ModelPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, rows: list[PickerRow], current: str | None) -> None:
        super().__init__()
        self.rows = rows
        self.current = current

    def compose(self):
        with Vertical(classes="dialog picker"):
            yield Label("Choose a model", classes="dialog-title")
            yield Label(f"now: {self.current or 'none loaded'}", id="picker-current", markup=False)
            yield OptionList(*[Option(Content(r.text), id=r.request, disabled=not r.enabled)
                               for r in self.rows], id="picker-list")
            yield Input(placeholder=FREE_TEXT, id="picker-input")
            yield Label("Enter loads · Tab moves to the text field · Esc cancels",
                        classes="dialog-hint")

    def on_mount(self) -> None:
        listing = self.query_one("#picker-list", OptionList)
        requests = [r.request for r in self.rows]
        if self.current in requests:
            listing.highlighted = requests.index(self.current)
        listing.focus()

    @on(OptionList.OptionSelected, "#picker-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Input.Submitted, "#picker-input")
    def _typed(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.dismiss(text)
