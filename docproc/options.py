"""How to extract: the `extract` config section, plus what only the legacy tools set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.config import ExtractConfig


@dataclass(kw_only=True, slots=True)
class ExtractOptions(ExtractConfig):
    """The extract section, with its defaults and its checks (ExtractConfig.__post_init__
    runs), and the legacy tools' extras.

    The stage takes its section as it is (`from_config`); the legacy tools build options from
    their flags, with a memory cap of their own (none, as the original tools had).
    """

    preprocess: bool = True  # image files: contrast stretch, upscale small ones
    image_dpi: int | None = None  # image files: the resolution to tell Tesseract (None: file's)
    pages: tuple[int, ...] = ()  # 1-based pages to extract; empty = all

    @classmethod
    def from_config(cls, section: ExtractConfig, **extras: Any) -> ExtractOptions:
        """The section's values (and `extras`) as options."""
        values = {f.name: getattr(section, f.name) for f in dataclasses.fields(ExtractConfig)}
        return cls(**values, **extras)
