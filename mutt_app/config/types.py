"""The value types settings share: ports, positive counts, comma-separated lists."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode

Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
CommaList = Annotated[tuple[str, ...], NoDecode]
"""Comma-separated in the environment (NoDecode: not JSON, see ``_split_commas``)."""
