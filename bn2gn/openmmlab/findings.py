"""Finding codes MMC001..MMC012: one stable code per way a freezing config goes wrong (docs/commands/config.md)."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Optional

ERROR, WARNING, INFO = "error", "warning", "info"


class Code(enum.Enum):
    MMC001 = "key the component does not accept (TypeError when the model is built)"
    MMC002 = "frozen_stages out of range"
    MMC003 = "lr_mult=0 on parameters that still require grad"
    MMC004 = "lr_mult=0 that does nothing (component fully frozen, or without parameters)"
    MMC005 = "custom key that matches no module"
    MMC006 = "BatchNorm statistics keep training although the component is meant frozen"
    MMC007 = "inherited merge surprise: a value the user's file does not show"
    MMC008 = "freezing applied only in init_weights() or only in train()"
    MMC009 = "GroupNorm candidate"
    MMC010 = "optimizer hook / wrapper argument not accepted"
    MMC011 = "unknown component type (not checked)"
    MMC012 = "key accepted through **kwargs and ignored (it does nothing)"


@dataclasses.dataclass(frozen=True)
class Finding:
    code: Code
    severity: str
    component: str
    key: str
    file: Optional[Path]
    line: int
    message: str

    def as_dict(self) -> dict:
        return {
            "code": self.code.name,
            "severity": self.severity,
            "component": self.component,
            "key": self.key,
            "file": str(self.file) if self.file else None,
            "line": self.line,
            "message": self.message,
        }

    def render(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        scope = " ".join(p for p in (self.component, self.key) if p)
        return f"{where}{self.code.name} {self.severity}: {scope}: {self.message}"
