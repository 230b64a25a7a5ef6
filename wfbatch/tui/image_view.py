"""The output image as a picture: terminal graphics where the terminal has them, half-blocks where not.

textual-image asks the terminal what it can draw when it is first imported, which only works
before Textual takes over the terminal: `wfbatch tui` imports this module before the app starts.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from textual.widget import Widget
from textual.widgets import Static
from textual_image.renderable import HalfcellImage as HalfcellRenderable
from textual_image.renderable import Image as BestRenderable
from textual_image.renderable import UnicodeImage as UnicodeRenderable
from textual_image.widget import Image as BestImage

from wfbatch.tui.half_blocks import HalfBlockImage


def image_widget(path: Path, *, graphics: bool) -> Widget:
    """A widget that draws the image at `path`; a line of text when it cannot be read.

    `graphics=False` forces half-blocks (headless runs and snapshots must not depend on the terminal).
    """
    try:
        with PILImage.open(path) as opened:
            opened.load()
            picture = opened.copy()
    except (OSError, ValueError) as error:
        return Static(f"(cannot show {path.name}: {error})", classes="image-missing", markup=False)
    use_best = graphics and BestRenderable not in (HalfcellRenderable, UnicodeRenderable)
    if use_best:
        widget: Widget = BestImage(picture, classes="picture")
    else:
        widget = HalfBlockImage(picture, classes="picture")
    return widget
